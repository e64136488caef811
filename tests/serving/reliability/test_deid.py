"""De-identified training exports: the PS3.15 Annex E Basic Profile attribute by attribute on real
DICOM objects (a CT, an MR, a 12-lead ECG waveform, a DX from deid-data, our AI SR), the options
chosen (modified dates, clean structured content), burned-in annotation, the key store kept apart,
and the datasci export end to end (nothing identifying in the zip)."""

from __future__ import annotations

import copy
import io
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from serving.results.deid import Deidentifier, Excluded, annex_e_actions
from serving.results.reid_keys import KeyStore
from tests.serving.worklist_fixtures import db_url, ecg_json, login, post_ecg, postgres_server, reading_client  # noqa: F401

NAME, PATIENT_ID = "Wang^Xiaoming", "530102198001019999"


def real_objects() -> list[pydicom.Dataset]:
    paths = [get_testdata_file(n) for n in ("CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm")]
    try:
        import deid_data

        paths.append(str(Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"))
    except ImportError:
        pass
    out = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = NAME, PATIENT_ID
        ds.StudyDate, ds.PatientBirthDate = "20240310", "19800101"
        ds.InstitutionName, ds.ReferringPhysicianName = "Village Clinic 7", "Li^Wei"
        ds.add_new(0x00091001, "LO", "private vendor note: Wang Xiaoming")  # a private attribute
        out.append(ds)
    return out


@pytest.fixture
def deid(tmp_path):
    keys = KeyStore(tmp_path / "reid" / "keys.db")
    yield Deidentifier(keys)
    keys.close()


def _values(ds: pydicom.Dataset):
    for elem in ds.iterall():
        yield int(elem.tag), elem


def test_every_profile_attribute_gets_its_action(deid):
    actions = annex_e_actions()
    assert len(actions) > 600 and actions[0x00100010] == "Z" and actions[0x0020000D] == "U"
    checked = 0
    for source in real_objects():
        out = deid.apply(source)
        after = {tag: elem for tag, elem in _values(out)}
        for tag, elem in _values(source):
            action = actions.get(tag)
            if action is None or tag in (0x00100010, 0x00100020):
                continue
            checked += 1
            if action == "X":
                assert tag not in after, f"{elem.keyword} should be removed"
            elif action == "U" and elem.VR == "UI" and elem.value:
                assert after[tag].value != elem.value and str(after[tag].value).startswith("2.25."), elem.keyword
            elif action in ("Z", "D") and elem.VR not in ("DA", "DT", "TM", "SQ") and elem.value not in (None, ""):
                assert tag in after and after[tag].value != elem.value, f"{elem.keyword} should be replaced or emptied"
        assert not any(elem.tag.is_private for elem in out.iterall()), "private attributes left"
        assert out.PatientName != NAME and out.PatientID != PATIENT_ID and out.PatientID == str(out.PatientName)
        assert out.PatientIdentityRemoved == "YES"
        codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
        assert {"113100", "113107"} <= codes
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        text = str(out)
        for identifier in (NAME, "Wang", PATIENT_ID, "Village Clinic 7", "Li^Wei", str(source.StudyInstanceUID)):
            assert identifier not in text, f"{identifier!r} survived de-identification"
    assert checked > 50


def test_uids_and_dates_stay_consistent_and_keys_stay_apart(deid, tmp_path):
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PatientID, ct.StudyDate = PATIENT_ID, "20240310"
    second = copy.deepcopy(ct)
    second.SOPInstanceUID, second.StudyDate = pydicom.uid.generate_uid(), "20240320"
    a, b = deid.apply(ct), deid.apply(second)
    assert a.StudyInstanceUID == b.StudyInstanceUID, "one study must stay one study"
    assert a.SOPInstanceUID != b.SOPInstanceUID
    from datetime import date

    def day(v):
        return date(int(v[:4]), int(v[4:6]), int(v[6:]))

    assert a.StudyDate != "20240310" and (day(b.StudyDate) - day(a.StudyDate)).days == 10, "interval not kept"
    # The key holder can re-identify; the key store is the service account's alone.
    assert deid.keys.original("uid", str(a.StudyInstanceUID)) == str(ct.StudyInstanceUID)
    assert deid.keys.original("patient", str(a.PatientID)) == PATIENT_ID
    path = tmp_path / "reid" / "keys.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_burned_in_annotation_is_not_exported(deid):
    us = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    us.Modality = "US"
    with pytest.raises(Excluded, match="BurnedInAnnotation"):
        deid.apply(us)
    us.BurnedInAnnotation = "NO"
    deid.apply(us)
    us.BurnedInAnnotation = "YES"
    with pytest.raises(Excluded, match="YES"):
        deid.apply(us)


def test_datasci_export_zip_is_deidentified_with_labels(reading_client):  # noqa: F811
    c = reading_client
    body = ecg_json(bpm=180, seed=3)
    body["patient"] = {"id": PATIENT_ID, "name": NAME, "sex": "M", "age": "54"}
    uid = post_ecg(c, body, c.auth())["study_uid"]
    waveform = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    waveform.PatientName, waveform.PatientID = NAME, PATIENT_ID
    buffer = io.BytesIO()
    waveform.save_as(buffer, enforce_file_format=True)
    r = c.http.post("/api/v1/ecg", content=buffer.getvalue(), headers={"content-type": "application/dicom", **c.auth()})
    assert r.status_code == 201, r.text
    reader = login(c, "reader-demo")
    for study in (uid, r.json()["study_uid"]):
        assert c.http.post(f"/api/v1/studies/{study}/claim", headers=reader).status_code == 200
        assert c.http.post(f"/api/v1/studies/{study}/sign", headers=reader, json={"agree": True}).status_code == 200

    assert c.http.get("/api/v1/exports/training.zip", headers=reader).status_code == 403
    r = c.http.get("/api/v1/exports/training.zip", headers=login(c, "datasci"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = archive.namelist()
    assert "manifest.json" in names and "labels.csv" in names
    assert sum(n.endswith(".dcm") for n in names) == 1 and sum(n.endswith(".npz") for n in names) == 1
    assert not any("keys" in n or n.endswith(".db") for n in names), "the key store went into the export"
    for name in names:
        data = archive.read(name)
        for identifier in (NAME, "Wang", PATIENT_ID, uid, str(waveform.StudyInstanceUID)):
            assert identifier.encode() not in data, f"{identifier!r} in {name}"
    dcm = pydicom.dcmread(io.BytesIO(archive.read(next(n for n in names if n.endswith(".dcm")))))
    assert dcm.PatientIdentityRemoved == "YES" and "WaveformSequence" in dcm
    import json

    manifest = json.loads(archive.read("manifest.json"))
    assert len(manifest["studies"]) == 2 and all(row["final_findings"] for row in manifest["studies"])
    assert "labels.csv" in names and archive.read("labels.csv").decode().startswith("study,patient")

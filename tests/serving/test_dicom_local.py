"""The DICOM path in-process (no Ray): dcmtk storescu/echoscu against our SCP, dicomweb-client
against our DICOMweb routes served by uvicorn, bad input over HTTP, the dispatcher writing SR +
heatmap SC (a fake model with the CxrPreReader contract; the real model runs in test_dicom_serve)."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from bench.county import UvicornThread, county_config, wait_for
from bench.standin_readers import StandInCxrReader
from serving.ingest.dicom import encode
from serving.results import findings_from_sr, triage_from_sr
from tests.serving.conftest import Client, free_port
from tests.serving.dicom_helpers import dcmtk, needs_dcmtk, storescu, wrapped_nih

# Uncompressed, JPEG 2000, RLE, JPEG baseline, JPEG lossless, JPEG-LS.
TEST_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG-LL.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
]


@pytest.fixture(scope="module")
def dicom_local(tmp_path_factory, ecg_registry, ecg_reader):
    from serving.local import create_local_app
    from serving.reading.runtime import start_local_dicom

    state = tmp_path_factory.mktemp("dicom-local")
    cfg = county_config(state, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(
                update={"enabled": True, "port": free_port(), "study_stable_seconds": 0.3, "poll_seconds": 0.1}
            )
        }
    )
    app, services = create_local_app(cfg, reader=ecg_reader)
    fake = StandInCxrReader()
    runtime = start_local_dicom(services, fake)
    wait_for(lambda: runtime.scp.running, 120, 0.05, "the SCP to listen")
    with (
        UvicornThread(app, cfg.http.port),
        httpx.Client(base_url=f"http://127.0.0.1:{cfg.http.port}", timeout=60) as http,
    ):
        client = Client(http, cfg)
        client.services, client.runtime, client.fake = services, runtime, fake
        yield client
    runtime.stop()


def study_of(client, study_uid, statuses=("ai_read", "no_ai_read", "ai_failed")):
    return wait_for(
        lambda: (s := client.services.db.get_study(study_uid)) is not None and s.status in statuses and s,
        60,
        what=f"study {study_uid} to reach {statuses}",
    )


@needs_dcmtk
@pytest.mark.dicom_net
def test_echo_and_unknown_ae(dicom_local):
    port = str(dicom_local.cfg.dicom.port)
    ok = dcmtk("echoscu", "-aet", "DEMOSITE", "-aec", "PREREAD", "127.0.0.1", port)
    assert ok.returncode == 0, ok.stderr
    refused = dcmtk("echoscu", "-aet", "STRANGER", "-aec", "PREREAD", "127.0.0.1", port)
    assert refused.returncode != 0
    assert "calling ae title not recognized" in (refused.stdout + refused.stderr).lower(), refused.stderr


@needs_dcmtk
@pytest.mark.dicom_net
def test_storescu_objects_reach_the_worklist(dicom_local, nih_dir, tmp_path):
    files = [Path(get_testdata_file(name)) for name in TEST_FILES]
    us_multiframe = None
    try:
        import deid_data

        base = Path(deid_data.__file__).parent / "data"
        files.append(base / "animals" / "cat.dcm")  # a real DX (chest, AP) from deid-data
        us_multiframe = base / "ultrasounds" / "ultrasound-multiframe.dcm"
        files.append(us_multiframe)
    except ImportError:
        pass
    pngs = sorted((nih_dir / "Pneumonia").glob("*.png"))[:2]
    for i, png in enumerate(pngs):
        path = tmp_path / f"nih{i}.dcm"
        path.write_bytes(wrapped_nih(png, patient_name="Li^Si"))
        files.append(path)
    result = storescu(dicom_local.cfg.dicom.port, files)
    assert result.returncode == 0, result.stdout + result.stderr

    files.append(Path(get_testdata_file("waveform_ecg.dcm")))  # a 12-lead ECG: the ECG path and model
    result = storescu(dicom_local.cfg.dicom.port, files[-1:])
    assert result.returncode == 0, result.stdout + result.stderr

    expected = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        expected[str(ds.StudyInstanceUID)] = "ai_read" if ds.Modality in ("DX", "CR", "ECG") else "no_ai_read"
    for study_uid, status in expected.items():
        study = study_of(dicom_local, study_uid)
        assert study.status == status, (study.modality, study.status, study.ai_error)
        if study.modality == "ECG":
            assert study.ai_read["measurements"]["heart_rate_bpm"] > 0
        elif status == "ai_read":
            roles = sorted(i.role for i in study.instances)
            assert roles == ["ai_sc", "ai_sr", "original"], roles
            assert study.ai_read["results"]["ai_sr"]["wado"].startswith("/dicomweb/studies/")
            assert study.level in ("urgent", "routine")
        else:
            assert "no routing rule" in study.ai_error
    worklist = dicom_local.http.get(
        "/api/v1/worklist", params={"limit": 1000}, headers=dicom_local.auth(role="reader")
    ).json()
    listed = {item["study_uid"]: item["status"] for item in worklist["items"]}
    for study_uid, status in expected.items():
        assert listed.get(study_uid) == status, f"{study_uid} not listed as {status}"


@needs_dcmtk
@pytest.mark.dicom_net
def test_truncated_image_gets_a_failure_status_and_service_stays_ready(dicom_local, tmp_path):
    # Structurally valid DICOM (dcmtk reads and sends it) whose Pixel Data is shorter than the header says.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = tmp_path / "short.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(dicom_local.cfg.dicom.port, [path])
    output = (result.stdout + result.stderr).lower()
    assert "0xc000" in output or "error" in output, output
    assert dicom_local.services.db.find_instance(str(ds.SOPInstanceUID)) is None, "a refused object was stored"
    assert dicom_local.http.get("/readyz").status_code == 200
    ok = dcmtk("echoscu", "-aet", "DEMOSITE", "-aec", "PREREAD", "127.0.0.1", str(dicom_local.cfg.dicom.port))
    assert ok.returncode == 0


def _dicomweb(client, role="grassroots"):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(
        url=f"http://{client.cfg.http.host}:{client.cfg.http.port}/dicomweb",
        headers={"Authorization": f"Bearer {client.token(role)}"},
    )


def test_dicomweb_client_stow_qido_wado_with_sr_and_sc(dicom_local, nih_dir):
    web = _dicomweb(dicom_local)
    png = sorted((nih_dir / "No_findings").glob("*.png"))[0]
    dx = pydicom.dcmread(io.BytesIO(wrapped_nih(png)))
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.SOPInstanceUID, ct.StudyInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    response = web.store_instances([dx, ct])
    assert len(response.ReferencedSOPSequence) == 2 and "FailedSOPSequence" not in response
    again = web.store_instances([dx])  # idempotent
    assert len(again.ReferencedSOPSequence) == 1

    study_uid = str(dx.StudyInstanceUID)
    study = study_of(dicom_local, study_uid)
    assert study.status == "ai_read", study.ai_error
    assert study_of(dicom_local, str(ct.StudyInstanceUID)).status == "no_ai_read"

    found = web.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    assert len(found) == 1 and set(found[0]["00080061"]["Value"]) == {"DX", "SR", "OT"}
    assert web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
    series = web.search_for_series(study_uid)
    assert len(series) == 3
    results = study.ai_read["results"]
    sr_bytes = web.retrieve_instance(study_uid, results["ai_sr"]["series_uid"], results["ai_sr"]["sop_instance_uid"])
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_bytes)
    assert sr.VerificationFlag == "UNVERIFIED" and sr.StudyInstanceUID == study_uid
    findings = {f["code"]: f for f in findings_from_sr(sr)}
    assert findings["PNEUMONIA"]["probability"] == pytest.approx(study.ai_read["findings"][0]["probability"], abs=1e-6)
    assert triage_from_sr(sr)["level"] == study.level
    sc = web.retrieve_instance(study_uid, results["ai_sc"]["series_uid"], results["ai_sc"]["sop_instance_uid"])
    assert sc.Modality == "OT" and sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "NO"
    assert sc.pixel_array.shape[2] == 3
    everything = web.retrieve_study(study_uid)
    assert {str(d.SOPInstanceUID) for d in everything} == {
        str(dx.SOPInstanceUID),
        results["ai_sr"]["sop_instance_uid"],
        results["ai_sc"]["sop_instance_uid"],
    }
    metadata = web.retrieve_instance_metadata(
        study_uid, results["ai_sr"]["series_uid"], results["ai_sr"]["sop_instance_uid"]
    )
    assert pydicom.Dataset.from_json(metadata).Modality == "SR"
    assert len(web.retrieve_study_metadata(study_uid)) == 3
    instances = web.search_for_instances(study_uid, str(dx.SeriesInstanceUID))
    assert [i["00080018"]["Value"][0] for i in instances] == [str(dx.SOPInstanceUID)]
    # Site scoping: a reader of another site sees nothing of it.
    other = dicom_local.http.get(
        f"/dicomweb/studies/{study_uid}", headers=dicom_local.auth(role="reader", sites=("other",))
    )
    assert other.status_code == 404
    assert (
        dicom_local.http.get(
            "/dicomweb/studies",
            params={"StudyInstanceUID": study_uid},
            headers=dicom_local.auth(role="reader", sites=("other",)),
        ).json()
        == []
    )
    assert dicom_local.http.get("/dicomweb/studies").status_code == 401


def _multipart(parts: list[bytes], boundary: str = "b0undary", close: bool = True) -> bytes:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=b0undary'


def test_stow_bad_input_is_refused_with_reasons_and_nothing_half_stored(dicom_local):
    headers = dicom_local.auth()
    before = dicom_local.services.db.count()
    ct = Path(get_testdata_file("MR_small.dcm")).read_bytes()

    r = dicom_local.http.post("/dicomweb/studies", content=ct, headers={**headers, "content-type": "application/dicom"})
    assert r.status_code == 415 and "multipart/related" in r.json()["detail"]
    r = dicom_local.http.post(
        "/dicomweb/studies",
        content=_multipart([ct]),
        headers={**headers, "content-type": 'multipart/related; type="application/dicom+xml"; boundary=b0undary'},
    )
    assert r.status_code == 415
    r = dicom_local.http.post(
        "/dicomweb/studies",
        content=_multipart([b"this is not DICOM" * 20]),
        headers={**headers, "content-type": STOW_TYPE},
    )
    assert r.status_code == 409, r.text
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000] and "not DICOM" in failed["00000902"]["Value"][0]
    r = dicom_local.http.post(
        "/dicomweb/studies", content=_multipart([ct[: len(ct) // 2]]), headers={**headers, "content-type": STOW_TYPE}
    )
    assert r.status_code == 409 and "truncated" in r.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
    r = dicom_local.http.post(
        "/dicomweb/studies", content=_multipart([ct], close=False)[:-10], headers={**headers, "content-type": STOW_TYPE}
    )
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"]
    assert dicom_local.services.db.count() == before, "a refused request left a study behind"

    # One good part, one bad: 202, the good one stored, the bad one named.
    r = dicom_local.http.post(
        "/dicomweb/studies", content=_multipart([ct, b"garbage" * 40]), headers={**headers, "content-type": STOW_TYPE}
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert len(body["00081199"]["Value"]) == 1 and len(body["00081198"]["Value"]) == 1
    # STOW-RS to a study URL: an instance of another study is refused (0xA900), nothing stored.
    other = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    other.SOPInstanceUID = pydicom.uid.generate_uid()
    r = dicom_local.http.post(
        "/dicomweb/studies/1.2.3.4", content=_multipart([encode(other)]), headers={**headers, "content-type": STOW_TYPE}
    )
    assert r.status_code == 409 and r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert dicom_local.services.db.find_instance(str(other.SOPInstanceUID)) is None
    # A reader may look but not send.
    r = dicom_local.http.post(
        "/dicomweb/studies",
        content=_multipart([ct]),
        headers={**dicom_local.auth(role="reader"), "content-type": STOW_TYPE},
    )
    assert r.status_code == 403


def test_stow_an_ecg_goes_the_ecg_path(dicom_local):
    body = Path(get_testdata_file("waveform_ecg.dcm")).read_bytes()
    r = dicom_local.http.post(
        "/dicomweb/studies", content=_multipart([body]), headers={**dicom_local.auth(), "content-type": STOW_TYPE}
    )
    assert r.status_code == 200, r.text
    ds = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
    study = dicom_local.services.db.get_study(str(ds.StudyInstanceUID))
    assert study.modality == "ECG" and study.status == "ai_read" and study.level in ("critical", "urgent", "routine")


@needs_dcmtk
@pytest.mark.dicom_net
def test_storage_failure_answers_out_of_resources(dicom_local, monkeypatch, tmp_path):
    from serving.store.objects import StorageUnavailable

    def disk_full(*args, **kwargs):
        raise StorageUnavailable("object store cannot take writes: disk full")

    monkeypatch.setattr(dicom_local.runtime.services.dicom.store, "put", disk_full)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID, ds.StudyInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(dicom_local.cfg.dicom.port, [path])
    output = (result.stdout + result.stderr).lower()
    assert "0xa700" in output or "outofresources" in output, output
    assert dicom_local.services.db.find_instance(str(ds.SOPInstanceUID)) is None


def test_radiograph_without_type2_patient_and_study_attributes_is_read(dicom_local, nih_dir):
    """Senders leave out Type 2 attributes (found by the fuzzer: no Study ID); the SR copies them
    from its evidence, so the read fills them empty instead of failing."""
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[1]
    ds = pydicom.dcmread(io.BytesIO(wrapped_nih(png, patient_name="Li^Si")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    for keyword in ("StudyID", "AccessionNumber", "PatientBirthDate", "PatientSex", "ReferringPhysicianName"):
        if keyword in ds:
            delattr(ds, keyword)
    r = dicom_local.http.post(
        "/dicomweb/studies", content=_multipart([encode(ds)]), headers={**dicom_local.auth(), "content-type": STOW_TYPE}
    )
    assert r.status_code == 200, r.text
    study = study_of(dicom_local, str(ds.StudyInstanceUID))
    assert study.status == "ai_read", study.ai_error
    sr_key = next(i.storage_key for i in study.instances if i.role == "ai_sr")
    sr = pydicom.dcmread(io.BytesIO(dicom_local.services.store.get(sr_key)))
    assert sr.StudyID == "" and sr.AccessionNumber == "" and sr.StudyInstanceUID == ds.StudyInstanceUID

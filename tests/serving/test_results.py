"""AI result objects: TID 1500 SR and heatmap Secondary Capture (serving.results, no Ray)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

import serving.results.sr as sr_module
from datasets.imaging import chest_phantom, wrap_array_as_dicom, wrap_png_as_dicom
from models.cxr import CXR_LABELS, build_cxr_model, record_heatmaps, render_overlay
from serving.results import (
    HEATMAP_LABEL,
    build_ai_sr,
    build_heatmap_sc,
    device_uid,
    findings_from_sr,
    model_from_sr,
    triage_from_sr,
)
from tests.conftest import REPO_ROOT

MODEL = {"name": "cxr", "version": "3", "manufacturer": "preread", "demo": True}


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def source(nih_dir) -> pydicom.Dataset:
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    return wrap_png_as_dicom(
        png, patient_name="Wang^Li", patient_sex="F", patient_birth_date="19600101", accession_number="ACC42"
    )


def all_findings(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    findings = []
    for label in CXR_LABELS:
        probability = float(rng.random())
        threshold = float(np.round(rng.uniform(0.2, 0.8), 3))
        findings.append(
            {
                "code": label.code,
                "name": label.name,
                "probability": probability,
                "threshold": threshold,
                "positive": probability >= threshold,
            }
        )
    return findings


def test_sr_round_trip(source):
    findings = all_findings()
    sr = build_ai_sr([source], findings, MODEL, {"level": "urgent", "score": 0.71}, series_number=900)
    data = dicom_bytes(sr)
    parsed = pydicom.dcmread(io.BytesIO(data))
    back = hd.sr.srread(io.BytesIO(data))

    assert parsed.SOPClassUID == Comprehensive3DSRStorage
    assert parsed.VerificationFlag == "UNVERIFIED"
    assert parsed.CompletionFlag == "COMPLETE" and parsed.PreliminaryFlag == "PRELIMINARY"
    assert parsed.StudyInstanceUID == source.StudyInstanceUID
    assert parsed.SeriesInstanceUID != source.SeriesInstanceUID and parsed.SeriesNumber == 900
    for keyword in ("PatientName", "PatientID", "PatientSex", "PatientBirthDate", "AccessionNumber"):
        assert parsed[keyword].value == source[keyword].value, keyword
    title = parsed.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("126000", "DCM")
    assert parsed.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99PREREAD"
    evidence = parsed.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    # The AI is a device observer.
    assert model_from_sr(back) == {
        "name": "cxr",
        "version": "3",
        "manufacturer": "preread",
        "device_uid": device_uid("cxr", "3"),
    }
    assert device_uid("cxr", "3") == device_uid("cxr", "3") != device_uid("cxr", "4")

    groups = back.content.get_image_measurement_groups()
    assert len(groups) == len(findings) + 1  # + triage
    for group in groups:
        assert len(group.get_qualitative_evaluations()) == 1
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID

    got = findings_from_sr(parsed)
    assert [f["code"] for f in got] == [f["code"] for f in findings]
    for want, have in zip(findings, got):
        assert have["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert have["threshold"] == pytest.approx(want["threshold"])
        assert have["positive"] == want["positive"]
        assert have["name"] == want["name"]
    pneumonia = next(f for f in got if f["code"] == "PNEUMONIA")
    assert pneumonia["coding"] == {"value": "233604007", "scheme": "SCT", "meaning": "Pneumonia"}
    assert triage_from_sr(data) == {"level": "urgent", "score": pytest.approx(0.71)}
    assert "DEMO" in parsed.SeriesDescription


def test_sr_for_real_cr_and_generic_findings():
    # Generic findings (not chest X-ray labels) on another kind of source image.
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    findings = [
        {"code": "AF", "name": "Atrial fibrillation", "probability": 0.9, "threshold": 0.5},  # derived positive
        {
            "code": "X",
            "probability": 0.1,
            "positive": False,
            "coding": {"value": "233604007", "scheme": "SCT", "meaning": "Pneumonia"},
        },
    ]
    sr = build_ai_sr([ct], findings, {"name": "ecg", "version": "1"})
    got = findings_from_sr(dicom_bytes(sr))
    assert got[0]["positive"] is True and got[0]["name"] == "Atrial fibrillation" and got[0]["threshold"] == 0.5
    assert got[1]["threshold"] is None and got[1]["coding"]["value"] == "233604007"
    assert triage_from_sr(sr) is None
    # A real CR without Imager Pixel Spacing (highdicom's image library needs it; we do without).
    rg1 = get_testdata_file("RG1_UNCR.dcm", download=False)
    if rg1:
        sr = build_ai_sr([pydicom.dcmread(rg1, stop_before_pixels=True)], all_findings(1)[:3], MODEL)
        assert len(findings_from_sr(dicom_bytes(sr))) == 3


_TIMESTAMPS = ("ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime", "ContributionDateTime")


def _sr_bytes_without_timestamps(sr: pydicom.Dataset) -> bytes:
    def blank(ds: pydicom.Dataset, element: pydicom.DataElement) -> None:
        if element.keyword in _TIMESTAMPS:
            element.value = ""

    sr.walk(blank)
    return dicom_bytes(sr)


def test_sr_document_is_what_highdicom_makes_from_the_whole_tree(source, monkeypatch):
    """build_ai_sr hands highdicom the root container without its items and attaches them after
    (serving.results.sr._sr_document: highdicom's copies of the tree were most of the read's CPU).
    The document must be the one highdicom makes from the whole tree: one image, two images of the
    study (evidence for both), a CR without the image library."""

    def whole_tree(source_datasets, report, **document):  # highdicom's own way, copies and all
        return hd.sr.Comprehensive3DSR(evidence=list(source_datasets), content=report, **document)

    second = pydicom.Dataset(source)
    second.SOPInstanceUID = pydicom.uid.generate_uid()
    second.SeriesInstanceUID = pydicom.uid.generate_uid()
    cases = [([source], all_findings()), ([source, second], all_findings(2)[:4])]
    rg1 = get_testdata_file("RG1_UNCR.dcm", download=False)
    if rg1:
        cases.append(([pydicom.dcmread(rg1, stop_before_pixels=True)], all_findings(1)[:3]))
    for sources, findings in cases:
        built = {}
        for name, document in (("ours", sr_module._sr_document), ("highdicom", whole_tree)):
            counter = iter(range(1_000_000))
            monkeypatch.setattr(
                sr_module, "generate_uid", lambda *_a, _uids=counter, **_k: f"1.2.826.0.1.3680043.10.1.{next(_uids)}"
            )
            monkeypatch.setattr(sr_module, "_sr_document", document)
            sr = build_ai_sr(sources, findings, MODEL, {"level": "urgent", "score": 0.71})
            assert len(sr.content[0].ContentSequence) == len(sr.ContentSequence)  # .content: the whole tree
            built[name] = _sr_bytes_without_timestamps(sr)
        assert built["ours"] == built["highdicom"]
        evidence = pydicom.dcmread(io.BytesIO(built["ours"])).CurrentRequestedProcedureEvidenceSequence[0]
        referenced = {
            item.ReferencedSOPInstanceUID
            for series in evidence.ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence
        }
        assert referenced == {ds.SOPInstanceUID for ds in sources}


def test_sr_rejects_bad_input(source):
    other = wrap_array_as_dicom(np.zeros((8, 8), np.uint8))  # another study
    finding = {"code": "PNEUMONIA", "probability": 0.5, "positive": True}
    with pytest.raises(ValueError, match="several studies"):
        build_ai_sr([source, other], [finding], MODEL)
    with pytest.raises(ValueError, match="outside"):
        build_ai_sr([source], [{**finding, "probability": 1.5}], MODEL)
    with pytest.raises(ValueError, match="triage level"):
        build_ai_sr([source], [finding], MODEL, {"level": "whenever", "score": 0.1})
    with pytest.raises(ValueError, match="duplicate"):
        build_ai_sr([source], [finding, finding], MODEL)
    with pytest.raises(ValueError, match="name"):
        build_ai_sr([source], [finding], {"version": "1"})


@pytest.mark.peer("dcmtk")
def test_dcmdump_parses_sr_and_sc(source, tmp_path):
    sr_path, sc_path = tmp_path / "sr.dcm", tmp_path / "sc.dcm"
    sr_path.write_bytes(dicom_bytes(build_ai_sr([source], all_findings(), MODEL)))
    sc_path.write_bytes(dicom_bytes(build_heatmap_sc(source, np.zeros((64, 64, 3), np.uint8), MODEL)))
    for path in (sr_path, sc_path):
        result = subprocess.run(["dcmdump", "-E", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert "UNVERIFIED" in subprocess.run(["dcmdump", str(sr_path)], capture_output=True, text=True).stdout
    if shutil.which("dsrdump"):  # dcmtk's SR reader checks the document tree against the IOD
        result = subprocess.run(["dsrdump", str(sr_path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Verification Flag   : UNVERIFIED" in result.stdout
        assert '(233604007,SCT,"Pneumonia")' in result.stdout


def test_heatmap_secondary_capture(source):
    overlay = np.zeros((256, 200, 3), np.uint8)
    overlay[..., 1] = 90
    sc = build_heatmap_sc(source, overlay, MODEL, series_number=901, finding="Pneumonia 0.83")
    back = pydicom.dcmread(io.BytesIO(dicom_bytes(sc)))
    assert back.SOPClassUID == SecondaryCaptureImageStorage
    assert back.StudyInstanceUID == source.StudyInstanceUID
    assert back.SeriesInstanceUID != source.SeriesInstanceUID and back.SeriesNumber == 901
    assert back.PatientID == source.PatientID and back.PatientName == source.PatientName
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3 and back.BitsAllocated == 8
    assert back.BurnedInAnnotation == "NO" and list(back.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    reference = back.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert back.ImageComments.startswith(HEATMAP_LABEL)
    # Pixel-aligned with what it was made from: the same rows and columns, the picture untouched; the
    # label is an Overlay Plane of the same geometry, with text in it.
    np.testing.assert_array_equal(back.pixel_array, overlay)
    assert (back.Rows, back.Columns) == (256, 200)
    label = back.overlay_array(0x6000)
    assert label.shape == (256, 200) and label.any() and back[0x6000, 0x0022].value.startswith("AI heatmap")


def test_end_to_end_phantom_to_sr_and_sc():
    phantom = chest_phantom(192, pneumonia=True, seed=5)
    source = wrap_array_as_dicom(phantom.to_uint16(12), bits_stored=12, patient_id="PH5")
    from datasets.imaging import read_dicom_image

    record = read_dicom_image(dicom_bytes(source))
    model = build_cxr_model("densenet_small")
    heat = record_heatmaps(model, record, [6], size=64)[0]
    overlay = render_overlay(record, heat)
    sc = build_heatmap_sc(source, overlay, MODEL)
    sr = build_ai_sr(
        [source],
        [{"code": "PNEUMONIA", "probability": 0.8, "threshold": 0.5, "positive": True}],
        MODEL,
        {"level": "critical", "score": 0.95},
    )
    assert pydicom.dcmread(io.BytesIO(dicom_bytes(sc))).pixel_array.shape[1:] == (192, 3)
    assert findings_from_sr(dicom_bytes(sr))[0]["positive"] is True


def test_results_package_does_not_import_ray():
    code = "import sys, serving.results; sys.exit(1 if 'ray' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "serving.results imported ray"

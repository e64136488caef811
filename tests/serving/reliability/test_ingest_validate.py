"""The one ingest validator (serving/ingest/validate.py) on the classes of bad input an outside test
sent: UIDs that are paths, markup or 5,002 characters; 0x0 images and BitsAllocated 0; short Pixel
Data; an ECG waveform in an unknown or compressed transfer syntax; a 1 MB patient name; an ECG whose
sampling rate is missing, zero or negative, or that lasts longer than a resting ECG. Each is refused
with a "do not resend" status and a reason; good objects pass. (The same classes go through the running
service's three ways in: test_fuzz_ingest.py.)"""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID

from datasets.ecg.readers import read_ecg
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from serving.ingest.validate import (
    GROSS_FACTOR,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DOES_NOT_MATCH,
    IngestLimits,
    IngestRefused,
    check_ecg_record,
    check_uid,
    validate_dicom,
)
from tests.serving.dicom_helpers import wrapped_nih

pytestmark = pytest.mark.reliability

BAD_UIDS = ["../../etc/passwd", "1." + "2" * 5000, "<img src=x onerror=alert(1)>", "1.02.3", "1..2", " ", "1.2.3."]
DO_NOT_RESEND = {STATUS_CANNOT_UNDERSTAND, STATUS_DOES_NOT_MATCH}


def encoded(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def radiograph(nih_dir) -> pydicom.Dataset:
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    return pydicom.dcmread(io.BytesIO(wrapped_nih(png)))


@pytest.fixture(scope="module")
def waveform() -> bytes:
    return open(get_testdata_file("waveform_ecg.dcm"), "rb").read()


def refused(data: bytes, limits: IngestLimits | None = None) -> IngestRefused:
    with pytest.raises(IngestRefused) as caught:
        validate_dicom(data, limits)
    assert caught.value.dimse_status in DO_NOT_RESEND and (caught.value.dimse_status & 0xFF00) != 0xA700
    assert caught.value.reason
    return caught.value


def test_good_objects_pass(radiograph, waveform):
    assert validate_dicom(encoded(radiograph)).dataset.Rows > 0
    assert validate_dicom(waveform).dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"
    assert validate_dicom(open(get_testdata_file("CT_small.dcm"), "rb").read()).warnings == []


@pytest.mark.parametrize("bad", BAD_UIDS)
@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SOPInstanceUID", "SeriesInstanceUID"])
def test_uids_are_digits_and_dots_and_at_most_64(radiograph, keyword, bad):
    ds = copy.deepcopy(radiograph)
    setattr(ds, keyword, bad)
    error = refused(encoded(ds))
    assert error.field == keyword
    assert len(error.reason) < 200, "a 5,000-character UID is not echoed back"
    with pytest.raises(IngestRefused):
        check_uid(bad, keyword)


def test_a_64_character_uid_passes_and_65_does_not():
    uid = "1." + "2" * 62
    assert check_uid(uid, "x") == uid
    with pytest.raises(IngestRefused):
        check_uid(uid + "3", "x")


@pytest.mark.parametrize("rows, cols", [(0, 0), (0, 512), (512, 0)])
def test_an_image_without_pixels_is_refused(radiograph, rows, cols):
    ds = copy.deepcopy(radiograph)
    ds.Rows, ds.Columns = rows, cols
    error = refused(encoded(ds))
    assert error.field == "Rows/Columns" and error.dimse_status == STATUS_DOES_NOT_MATCH


@pytest.mark.parametrize("bits", [0, 7, 12])
def test_bits_allocated_must_be_a_real_size(radiograph, bits):
    ds = copy.deepcopy(radiograph)
    ds.BitsAllocated = bits
    assert refused(encoded(ds)).field == "BitsAllocated"


def test_short_pixel_data_and_huge_declared_images_are_refused(radiograph):
    ds = copy.deepcopy(radiograph)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    assert "truncated" in refused(encoded(ds)).reason
    ds = copy.deepcopy(radiograph)
    ds.NumberOfFrames = 60000  # would decode to tens of GB
    error = refused(encoded(ds), IngestLimits(max_decoded_bytes=64 * 1024 * 1024))
    assert error.field == "PixelData" and "decode" in error.reason


def test_a_waveform_in_an_unknown_or_compressed_transfer_syntax_is_refused(waveform):
    ds = pydicom.dcmread(io.BytesIO(waveform))
    ds.file_meta.TransferSyntaxUID = UID("1.2.3.4.5.6")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)  # written as the original syntax, labelled another
    assert refused(buffer.getvalue()).field == "TransferSyntaxUID"
    ds = pydicom.dcmread(io.BytesIO(waveform))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.50")  # JPEG baseline: never for a waveform
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    error = refused(buffer.getvalue())
    assert error.field == "TransferSyntaxUID" and "waveform" in error.reason


def test_a_1mb_patient_name_is_refused_and_a_slightly_long_one_is_a_warning(radiograph):
    ds = copy.deepcopy(radiograph)
    ds.PatientName = "A" * (1024 * 1024)
    error = refused(encoded(ds))
    assert error.field == "PatientName" and "PN allows" in error.reason
    ds = copy.deepcopy(radiograph)
    ds.PatientID = "9" * 70  # LO: 64
    checked = validate_dicom(encoded(ds))
    assert any("PatientID" in w and "truncated" in w for w in checked.warnings)
    ds.PatientID = "9" * (64 * GROSS_FACTOR + 1)
    assert refused(encoded(ds)).field == "PatientID"


def ecg_record(rate=500.0, seconds=10.0, **meta) -> EcgRecord:
    n = max(1, int(seconds * (rate if rate and rate > 0 and np.isfinite(rate) else 500)))
    return EcgRecord(
        signals=np.zeros((12, n)),
        leads=STANDARD_LEADS,
        sampling_rate=rate,
        patient={"name": "Li^Si", "id": "123"},
        meta={"format": "json", **meta},
    )


@pytest.mark.parametrize("rate", [0.0, -500.0, float("nan"), float("inf"), None])
def test_ecg_sampling_rate_missing_zero_or_negative_is_refused(rate):
    with pytest.raises(IngestRefused) as caught:
        check_ecg_record(ecg_record(rate=rate))
    assert caught.value.field == "sampling_rate"


def test_a_resting_ecg_has_a_maximum_duration():
    assert check_ecg_record(ecg_record(seconds=10)) == []
    with pytest.raises(IngestRefused) as caught:
        check_ecg_record(ecg_record(seconds=61), IngestLimits(max_ecg_seconds=60))
    assert caught.value.field == "duration"


@pytest.mark.parametrize("bad", BAD_UIDS)
def test_ecg_uids_from_any_format_are_checked(bad):
    with pytest.raises(IngestRefused) as caught:
        check_ecg_record(ecg_record(study_instance_uid=bad))
    assert caught.value.field == "study_instance_uid"


def test_ecg_patient_fields_are_bounded():
    record = ecg_record()
    record.patient["name"] = "A" * (1024 * 1024)
    with pytest.raises(IngestRefused) as caught:
        check_ecg_record(record)
    assert caught.value.field == "patient.name"
    record.patient["name"] = {"nested": "object"}
    with pytest.raises(IngestRefused):
        check_ecg_record(record)


def test_the_dicom_waveform_reader_output_passes(waveform):
    assert check_ecg_record(read_ecg(waveform)) == []

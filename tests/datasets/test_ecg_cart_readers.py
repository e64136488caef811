"""Cart formats (Philips Sierra XML, GE MUSE / CardioSoft XML, HL7 aECG) behind the one reader interface,
with the cart's own measurements and statements kept on the record; bad headers refused (issue 14, item 8).

Philips: the four real files of ../shared/data/ecg/philips. GE and HL7 aECG: fixtures written by
scripts/make_ecg_fixtures.py around real PTB-XL records, so the decoded waveform can be checked
against the PTB-XL original sample by sample.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.errors import EcgInputError
from datasets.ecg.measure import measure
from datasets.ecg.readers import (
    READERS,
    EcgReader,
    read_dicom_waveform,
    read_ecg,
    read_json,
    read_wfdb,
    reader_for,
)
from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.validate import ValidationRules, validate_record
from datasets.vocabulary.ecg_measurements import CART_MEASUREMENTS
from tests.conftest import shared_data_dir

PHILIPS_DIR = shared_data_dir() / "ecg" / "philips"
PTBXL_DIR = shared_data_dir() / "ecg" / "ptbxl"
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "ecg"


def _expect(field: str, fn, *args) -> EcgInputError:
    with pytest.raises(EcgInputError) as info:
        fn(*args)
    assert info.value.field == field, str(info.value)
    return info.value


def _ptbxl(ecg_id: int):
    return read_wfdb(PTBXL_DIR / "records500" / "00000" / f"{ecg_id:05d}_hr.hea").in_standard_order()


# ------------------------------------------------------------------------------------- interface


def test_every_reader_implements_the_interface():
    names = [reader.name for reader in READERS]
    assert len(names) == len(set(names))
    assert {"dicom", "wfdb", "json", "philips", "ge_muse", "ge_cardiosoft", "hl7_aecg", "scp_ecg"} <= set(names)
    for reader in READERS:
        assert isinstance(reader, EcgReader) and reader.description and reader.suffixes
        assert all(reader.verify_suffix(f"ecg{suffix.upper()}") for suffix in reader.suffixes)
        assert not reader.verify_suffix("ecg.png") and not reader.verify_suffix(None)


# ------------------------------------------------------------------------------------- Philips

# The cart's printed global measurements, as in each file's <globalmeasurements>.
PHILIPS_MACHINE = {
    "2020-5-18_15-48-11.xml": {
        "heart_rate_bpm": 64,
        "rr_interval_ms": 938,
        "pr_interval_ms": 164,
        "p_duration_ms": 104,
        "qrs_duration_ms": 102,
        "qt_interval_ms": 399,
        "qtc_bazett_ms": 412,
        "qtc_fridericia_ms": 408,
        "p_axis_deg": 27,
        "qrs_axis_deg": 22,
        "t_axis_deg": 80,
    },
    "ad4d3d80-d165_1-04_orig.xml": {
        "heart_rate_bpm": 41,
        "pr_interval_ms": 144,
        "qrs_duration_ms": 102,
        "qt_interval_ms": 564,
        "qtc_bazett_ms": 466,
        "qtc_fridericia_ms": 497,
        "qrs_axis_deg": 85,
    },
    "3191723_ZZDEMOPTONLY_1-04_orig.xml": {
        "heart_rate_bpm": 84,
        "pr_interval_ms": 144,
        "qrs_duration_ms": 84,
        "qt_interval_ms": 352,
        "qtc_bazett_ms": 417,
        "qrs_axis_deg": 78,
    },
    "129DYPRG.XML": {
        "heart_rate_bpm": 41,
        "pr_interval_ms": 151,
        "qrs_duration_ms": 135,
        "qt_interval_ms": 476,
        "qrs_axis_deg": -21,
    },
}


@pytest.mark.parametrize("name", sorted(PHILIPS_MACHINE))
def test_philips_sierra_real_files(name):
    data = (PHILIPS_DIR / name).read_bytes()
    assert reader_for(data).name == "philips"
    record = read_ecg(data, "text/xml", name)
    assert record.meta["format"] == "philips"
    # 11 s channels less the cart's calibration pulse at the end (same on all leads): ~10.5 s of ECG
    assert record.sampling_rate == 500.0 and 5200 <= record.signals.shape[1] <= 5300
    assert record.meta["calibration_samples_dropped"] == 5500 - record.signals.shape[1]
    assert not np.all(record.signals[:, -1] == record.signals[0, -1])
    checked = validate_record(record)
    assert checked.leads == STANDARD_LEADS and checked.machine is record.machine
    # XLI decoded and scaled to mV: a resting ECG's amplitudes, and the rate the cart measured.
    assert 0.3 < np.ptp(checked.lead("II")) < 6.0
    machine = record.machine
    assert machine is not None and set(machine.measurements) <= set(CART_MEASUREMENTS)
    for key, value in PHILIPS_MACHINE[name].items():
        assert machine.measurements[key] == value, key
    ours = measure(checked).get("heart_rate_bpm")
    assert abs(ours - machine.measurements["heart_rate_bpm"]) < 5, (ours, machine.measurements)
    assert machine.statements and all(s.text for s in machine.statements)
    json.dumps(machine.to_json())


def test_philips_statements_and_implausible_p_duration():
    record = read_ecg((PHILIPS_DIR / "ad4d3d80-d165_1-04_orig.xml").read_bytes())
    texts = [s.text for s in record.machine.statements]
    assert texts[0] == "SINUS BRADYCARDIA" and record.machine.statements[0].reason == "V-rate<60"
    assert record.machine.severity == "OTHERWISE NORMAL"
    # the file's <pdur> is 508 ms beside a PR of 144 ms: not a P duration, so not shown
    assert "p_duration_ms" not in record.machine.measurements
    acute = read_ecg((PHILIPS_DIR / "129DYPRG.XML").read_bytes()).machine
    assert any("Acute MI" in s.text for s in acute.statements) and acute.severity == "ABNORMAL"
    assert record.patient["sex"] == "F" and record.patient["age"] == 32


# ------------------------------------------------------------------------------------- GE, HL7


@pytest.mark.parametrize(
    "fixture, reader, ecg_id, lsb_uv",
    [
        ("ge_muse_rest.xml", "ge_muse", 3, 4.88),
        ("ge_cardiosoft_rest.xml", "ge_cardiosoft", 2, 5.0),
        ("hl7_aecg_rest.xml", "hl7_aecg", 4, 5.0),
        ("scp_ecg_rest.scp", "scp_ecg", 5, 5.0),
    ],
)
def test_cart_xml_decodes_the_original_waveform(fixture, reader, ecg_id, lsb_uv):
    data = (FIXTURES / fixture).read_bytes()
    # the bytes decide, whatever the sender calls the upload
    assert reader_for(data, "application/octet-stream", "upload.bin").name == reader
    record = validate_record(read_ecg(data, "application/octet-stream", "upload.bin"))
    assert record.meta["format"] == reader and record.sampling_rate == 500.0
    original = _ptbxl(ecg_id)
    # within half a quantisation step of the PTB-XL samples (MUSE: III, aVR, aVL, aVF derived)
    tolerance = 1.5 * lsb_uv / 1000.0
    np.testing.assert_allclose(record.signals, original.signals, rtol=0, atol=tolerance)
    if reader == "ge_muse":
        assert record.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"]


def test_ge_muse_machine_read():
    record = read_ecg((FIXTURES / "ge_muse_rest.xml").read_bytes())
    machine = record.machine
    assert machine.measurements == {
        "heart_rate_bpm": 64,
        "pr_interval_ms": 158,
        "qrs_duration_ms": 90,
        "qt_interval_ms": 392,
        "qtc_bazett_ms": 404,
        "qtc_fridericia_ms": 400,
        "p_axis_deg": 52,
        "qrs_axis_deg": 61,
        "t_axis_deg": 44,
        "p_duration_ms": 104.0,
    }
    assert [s.text for s in machine.statements] == ["Normal sinus rhythm", "Normal ECG"]
    assert record.meta["manufacturer"] == "GE Healthcare" and record.meta["filter_low_hz"] == pytest.approx(0.16)
    assert record.patient["sex"] == "F" and record.patient["age"] == 37


def test_ge_cardiosoft_machine_read():
    record = read_ecg((FIXTURES / "ge_cardiosoft_rest.xml").read_bytes())
    assert record.machine.measurements["heart_rate_bpm"] == 54
    assert record.machine.measurements["p_duration_ms"] == 102
    assert record.machine.measurements["qtc_bazett_ms"] == 405
    assert [s.text for s in record.machine.statements][:1] == ["Sinus bradycardia"]
    assert record.patient == {"id": "GZ-0002", "name": "CARDIOSOFT TEST", "sex": "M", "age": 19}


def test_hl7_aecg_machine_read():
    record = read_ecg((FIXTURES / "hl7_aecg_rest.xml").read_bytes())
    assert record.machine.measurements["qtc_fridericia_ms"] == 400
    assert record.machine.measurements["qrs_axis_deg"] == 68
    assert [s.text for s in record.machine.statements] == ["Sinus rhythm", "Normal ECG"]


def test_scp_ecg_machine_read_and_damage():
    data = (FIXTURES / "scp_ecg_rest.scp").read_bytes()
    record = read_ecg(data, None, "ecg.scp")
    assert record.patient == {"id": "GZ-0005", "sex": "F", "age": 19}
    assert record.machine.measurements == {
        "rr_interval_ms": 857,
        "p_axis_deg": 60,
        "qrs_axis_deg": 70,
        "t_axis_deg": 50,
    }
    assert [s.text for s in record.machine.statements] == ["Sinus rhythm", "Normal ECG"]
    _expect("file", read_ecg, data[: len(data) // 2], None, "ecg.scp")  # truncated upload
    # sample interval 0 µs in section 6: no sampling rate, refused
    index = data.index(bytes([12, 0x04]))  # section 3 body; section 6 follows it
    section6 = data.index((5000).to_bytes(2, "little") + (2000).to_bytes(2, "little"), index)
    broken = data[: section6 + 2] + b"\x00\x00" + data[section6 + 4 :]
    with pytest.raises(EcgInputError) as info:
        read_ecg(broken)
    assert info.value.field in ("file", "sampling_rate") and "interval" in info.value.reason


def test_unknown_xml_names_its_root():
    error = _expect("file", read_ecg, b'<?xml version="1.0"?>\n<Invoice><Total>3</Total></Invoice>', "text/xml")
    assert "<Invoice>" in error.reason


def test_cardiosoft_bad_headers():
    text = (FIXTURES / "ge_cardiosoft_rest.xml").read_text(encoding="latin-1")
    for rate in ("0", "-500", ""):
        bad = text.replace('<SampleRate units="Hz">500</SampleRate>', f'<SampleRate units="Hz">{rate}</SampleRate>')
        _expect("SampleRate", read_ecg, bad.encode("latin-1"))
    exercise = text.replace(
        "<ObservationType>RestECG</ObservationType>", "<ObservationType>ExerciseECG</ObservationType>"
    )
    _expect("ObservationType", read_ecg, exercise.encode("latin-1"))
    broken = text[: len(text) // 2].encode("latin-1")
    _expect("file", read_ecg, broken)


def test_hl7_aecg_without_sample_increment_is_refused():
    text = (FIXTURES / "hl7_aecg_rest.xml").read_text(encoding="utf-8")
    bad = text.replace('<increment value="0.002" unit="s"/>', '<increment value="0" unit="s"/>')
    with pytest.raises(EcgInputError) as info:
        read_ecg(bad.encode())
    assert info.value.field in ("file", "sampling_rate")


# ------------------------------------------------------------------------------------- item 8


def _wfdb_copy(tmp_path: Path, record_line_fields: list[str] | None) -> Path:
    """A copy of CinC record E07500 whose header's record line is replaced."""
    source = shared_data_dir() / "ecg" / "cinc2021" / "E07500"
    lines = source.with_suffix(".hea").read_text().splitlines()
    if record_line_fields is not None:
        lines[0] = " ".join(record_line_fields)
    (tmp_path / "E07500.hea").write_text("\n".join(lines) + "\n")
    (tmp_path / "E07500.mat").write_bytes(source.with_suffix(".mat").read_bytes())
    return tmp_path / "E07500.hea"


@pytest.mark.parametrize(
    "fs, words",
    [(None, "missing"), ("0", "positive"), ("-1", "positive"), ("-250/1000", "positive"), ("abc", "number")],
)
def test_wfdb_header_sampling_rate_missing_zero_negative_is_refused(tmp_path, fs, words):
    first = (shared_data_dir() / "ecg" / "cinc2021" / "E07500.hea").read_text().split("\n")[0].split()
    fields = first[:2] + ([fs] if fs is not None else [])
    error = _expect("sampling_rate", read_wfdb, _wfdb_copy(tmp_path, fields))
    assert words in error.reason


def test_wfdb_83_minute_header_is_refused_before_reading(tmp_path):
    first = (shared_data_dir() / "ecg" / "cinc2021" / "E07500.hea").read_text().split("\n")[0].split()
    fields = first[:3] + [str(83 * 60 * 500)]  # 83 minutes at 500 Hz; the signal file holds 10 s
    error = _expect("duration", read_wfdb, _wfdb_copy(tmp_path, fields))
    assert "4980.0 s" in error.reason and "60 s" in error.reason


def test_dicom_sampling_rate_and_length_checked_before_decoding():
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    for rate in (0, -1000):
        bad = copy.deepcopy(ds)
        bad.WaveformSequence[0].SamplingFrequency = rate
        _expect("SamplingFrequency", read_dicom_waveform, bad)
    long = copy.deepcopy(ds)
    long.WaveformSequence[0].SamplingFrequency = 100  # 10000 samples now last 100 s
    assert "100.0 s" in _expect("duration", read_dicom_waveform, long).reason


def test_json_and_validation_refuse_over_60_seconds():
    record = _ptbxl(1)
    long_signals = np.tile(record.signals, (1, 7))  # 70 s
    body = {"sampling_rate": 500, "leads": {lead: long_signals[i].tolist() for i, lead in enumerate(STANDARD_LEADS)}}
    assert "70.0 s" in _expect("duration", read_json, body).reason
    with pytest.raises(EcgInputError) as info:
        validate_record(type(record)(signals=long_signals, leads=record.leads, sampling_rate=500.0))
    assert info.value.field == "duration"
    assert validate_record(
        type(record)(signals=long_signals, leads=record.leads, sampling_rate=500.0), ValidationRules(max_seconds=120)
    ).duration_s == pytest.approx(70.0)

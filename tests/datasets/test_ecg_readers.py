"""ECG readers on real files: pydicom's 12-lead ECG, the 30 CinC 2021 WFDB records, JSON."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.errors import EcgInputError
from datasets.ecg.readers import (
    normalize_lead_name,
    read_dicom_waveform,
    read_ecg,
    read_json,
    read_wfdb,
)
from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.validate import validate_record
from tests.conftest import shared_data_dir

CINC_DIR = shared_data_dir() / "ecg" / "cinc2021"
CINC_RECORDS = sorted(p.stem for p in CINC_DIR.glob("*.hea"))


@pytest.fixture(scope="module")
def dicom_path() -> str:
    return get_testdata_file("waveform_ecg.dcm")


@pytest.fixture(scope="module")
def dicom_bytes(dicom_path) -> bytes:
    return Path(dicom_path).read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _cinc_zip(cinc_dir: Path, name: str, folder: str = "") -> bytes:
    return _zip(
        {
            f"{folder}{name}.hea": (cinc_dir / f"{name}.hea").read_bytes(),
            f"{folder}{name}.mat": (cinc_dir / f"{name}.mat").read_bytes(),
        }
    )


def _expect_error(field: str, fn, *args, **kwargs) -> EcgInputError:
    with pytest.raises(EcgInputError) as info:
        fn(*args, **kwargs)
    assert info.value.field == field, str(info.value)
    assert str(info.value) == f"{info.value.field}: {info.value.reason}"
    return info.value


# ---------------------------------------------------------------------------------------- errors


def test_error_type_contract():
    error = EcgInputError("leads.V3", "expected a list of numbers")
    assert isinstance(error, ValueError)
    assert (error.field, error.reason) == ("leads.V3", "expected a list of numbers")
    assert str(error) == "leads.V3: expected a list of numbers"
    assert error.to_dict() == {"field": "leads.V3", "reason": "expected a list of numbers"}
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert (again.field, again.reason) == (error.field, error.reason)


# ---------------------------------------------------------------------------------------- lead names


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("I", "I"),
        ("ii", "II"),
        ("Lead I (Einthoven)", "I"),
        ("Lead III", "III"),
        ("AVR", "aVR"),
        ("Lead aVL", "aVL"),
        ("avf", "aVF"),
        ("V1", "V1"),
        ("lead v6", "V6"),
        ("MDC_ECG_LEAD_I", "I"),
        ("MDC_ECG_LEAD_AVR", "aVR"),
        ("MDC_ECG_LEAD_V3", "V3"),
        ("5.6.3-9-1", "I"),
        ("5.6.3-9-61", "III"),
        ("5.6.3-9-64", "aVF"),
        ("5.6.3-9-8", "V6"),
        ("2:2", "II"),
        ("2:62", "aVR"),
        ("DII", "II"),
        ("V4R", None),
        ("V7", None),
        ("-aVR", None),
        ("Pacing", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_lead_name(raw, expected):
    assert normalize_lead_name(raw) == expected


# ---------------------------------------------------------------------------------------- DICOM


def _manual_mv(ds: pydicom.Dataset, group_index: int = 0) -> np.ndarray:
    """Independent decoding of a multiplex group: raw int16 × sensitivity × correction + baseline, µV → mV."""
    group = ds.WaveformSequence[group_index]
    n_ch, n_s = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    raw = np.frombuffer(group.WaveformData, dtype="<i2")[: n_ch * n_s].reshape(n_s, n_ch).astype(float)
    out = np.empty((n_ch, n_s))
    for j, ch in enumerate(group.ChannelDefinitionSequence):
        assert ch.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
        value = raw[:, j] * float(ch.ChannelSensitivity) * float(ch.ChannelSensitivityCorrectionFactor)
        out[j] = (value + float(ch.ChannelBaseline)) / 1000.0
    return out


def test_dicom_waveform_real_file(dicom_path):
    record = read_dicom_waveform(dicom_path)
    ds = pydicom.dcmread(dicom_path)
    assert record.leads == STANDARD_LEADS
    assert record.sampling_rate == 1000.0
    assert record.signals.shape == (12, 10000)
    assert record.signals.dtype == np.float64 and record.signals.flags["C_CONTIGUOUS"]
    # the rhythm group, converted by hand
    np.testing.assert_allclose(record.signals, _manual_mv(ds, 0), rtol=0, atol=1e-12)
    # spot check: sample 0 of lead I is raw 80 × 1.25 µV = 100 µV = 0.1 mV
    assert record.signals[0, 0] == pytest.approx(0.1)
    # sensible mV amplitudes for a resting ECG
    peak_to_peak = np.ptp(record.signals, axis=1)
    assert (np.abs(record.signals).max(axis=1) < 5).all()
    assert peak_to_peak[STANDARD_LEADS.index("II")] > 0.5
    assert record.meta["format"] == "dicom"
    assert record.meta["source_units"] == "uV"
    assert record.meta["waveform_group"] == "RHYTHM"
    assert record.meta["sop_instance_uid"] == ds.SOPInstanceUID
    assert record.meta["study_instance_uid"] == ds.StudyInstanceUID
    assert record.meta["series_instance_uid"] == ds.SeriesInstanceUID
    assert record.meta["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.9.1.1"
    assert record.meta["manufacturer"] == "Mortara Instrument, Inc."
    assert record.meta["acquisition_datetime"] == "2013-01-25T10:59:19"
    assert record.patient == {
        "id": str(ds.PatientID),
        "name": "Anonymous",
        "sex": "F",
        "birth_date": "1971-01-23",
        "age": 42,
    }
    json.dumps(record.patient), json.dumps(record.meta)
    # and it is a valid 12-lead record
    assert validate_record(record).leads == STANDARD_LEADS


def test_dicom_sources_bytes_path_dataset_agree(dicom_path, dicom_bytes):
    from_path = read_dicom_waveform(Path(dicom_path))
    from_bytes = read_dicom_waveform(dicom_bytes)
    from_ds = read_dicom_waveform(pydicom.dcmread(dicom_path))
    np.testing.assert_array_equal(from_path.signals, from_bytes.signals)
    np.testing.assert_array_equal(from_path.signals, from_ds.signals)
    sniffed = read_ecg(dicom_bytes, content_type="application/dicom", filename="ecg.dcm")
    assert sniffed.meta["format"] == "dicom"
    assert read_ecg(dicom_bytes).meta["sop_instance_uid"] == from_path.meta["sop_instance_uid"]


def test_dicom_rhythm_group_chosen_even_when_median_beat_first(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    expected = _manual_mv(ds, 0)
    ds.WaveformSequence = pydicom.Sequence([ds.WaveformSequence[1], ds.WaveformSequence[0]])
    record = read_dicom_waveform(ds)
    assert record.signals.shape == (12, 10000)
    np.testing.assert_allclose(record.signals, expected, atol=1e-12)
    # no labels at all: the first group that is not labelled as a median beat
    for group in ds.WaveformSequence:
        del group.MultiplexGroupLabel
    assert read_dicom_waveform(ds).signals.shape[1] == 1200  # first group, now unlabelled
    ds2 = pydicom.dcmread(dicom_path)
    del ds2.WaveformSequence[0].MultiplexGroupLabel
    assert read_dicom_waveform(ds2).signals.shape[1] == 10000  # group 1 is still "MEDIAN BEAT"


def test_dicom_units_sensitivity_and_baseline(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    expected = _manual_mv(ds, 0)
    channels = ds.WaveformSequence[0].ChannelDefinitionSequence
    # same signal declared in mV: sensitivity 0.00125 mV per unit
    for ch in channels:
        ch.ChannelSensitivity = "0.00125"
        ch.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    # and a correction factor / baseline on lead II
    channels[1].ChannelSensitivity = "0.000625"
    channels[1].ChannelSensitivityCorrectionFactor = "2"
    channels[1].ChannelBaseline = "0.05"  # mV, in the channel's units
    record = read_dicom_waveform(ds)
    assert record.meta["source_units"] == "mV"
    np.testing.assert_allclose(record.signals[0], expected[0], atol=1e-9)
    np.testing.assert_allclose(record.signals[1], expected[1] + 0.05, atol=1e-9)
    channels[2].ChannelSensitivityUnitsSequence[0].CodeValue = "mmHg"
    _expect_error("ChannelSensitivityUnitsSequence", read_dicom_waveform, ds)


def test_dicom_channel_labels_mdc_and_label_only(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    channels = ds.WaveformSequence[0].ChannelDefinitionSequence
    for ch, lead in zip(channels, STANDARD_LEADS):
        ch.ChannelSourceSequence[0].CodeValue = "unknown"
        ch.ChannelSourceSequence[0].CodeMeaning = f"MDC_ECG_LEAD_{lead.upper()}"
    assert read_dicom_waveform(ds).leads == STANDARD_LEADS
    for ch, lead in zip(channels, STANDARD_LEADS):
        del ch.ChannelSourceSequence
        ch.ChannelLabel = f"Lead {lead}"
    assert read_dicom_waveform(ds).leads == STANDARD_LEADS


def test_dicom_unknown_and_duplicate_channels(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    channels = ds.WaveformSequence[0].ChannelDefinitionSequence
    original = copy.deepcopy(channels[9].ChannelSourceSequence[0])
    channels[9].ChannelSourceSequence[0].CodeValue = "5.6.3-9-999"
    channels[9].ChannelSourceSequence[0].CodeMeaning = "Lead V4R"
    error = _expect_error("leads", read_dicom_waveform, ds)
    assert "V4R" in error.reason
    channels[9].ChannelSourceSequence[0] = original
    channels[9].ChannelSourceSequence[0].CodeValue = "5.6.3-9-2"  # a second lead II
    channels[9].ChannelSourceSequence[0].CodeMeaning = "Lead II"
    assert "more than once" in _expect_error("leads", read_dicom_waveform, ds).reason


@pytest.mark.parametrize("keep", [132, 1000, 3000, 150_000, -1000, -1])
def test_dicom_truncated_is_file_error(dicom_bytes, keep):
    data = dicom_bytes[:keep]
    error = _expect_error("file", read_dicom_waveform, data)
    assert error.reason
    assert _expect_error("file", read_ecg, data, "application/dicom").reason


def test_dicom_truncated_waveform_data(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    ds.WaveformSequence[0].WaveformData = ds.WaveformSequence[0].WaveformData[:-24]
    assert "truncated" in _expect_error("file", read_dicom_waveform, ds).reason


def test_random_bytes_are_file_error():
    data = np.random.default_rng(0).bytes(4096)
    assert data[:1] != b"{" and data[:2] != b"PK"
    error = _expect_error("file", read_ecg, data)
    # The reason lists every format read (it grew with the vendor readers of issue 14).
    assert error.reason.startswith("not a DICOM ECG waveform, a WFDB zip, JSON")
    for name in ("Philips Sierra XML", "GE MUSE", "CardioSoft", "HL7 aECG", "SCP-ECG"):
        assert name in error.reason
    _expect_error("file", read_dicom_waveform, data)
    _expect_error("file", read_ecg, data, "application/dicom")
    _expect_error("file", read_ecg, data, "application/octet-stream", "ecg.zip")
    _expect_error("file", read_ecg, b"")


def test_non_waveform_dicom():
    ct = get_testdata_file("CT_small.dcm")
    error = _expect_error("WaveformSequence", read_dicom_waveform, ct)
    assert "CT Image Storage" in error.reason
    # the bytes have a DICM preamble, so sniffing sends them to the DICOM reader
    _expect_error("WaveformSequence", read_ecg, Path(ct).read_bytes())


def test_only_median_beat_is_rejected(dicom_path):
    ds = pydicom.dcmread(dicom_path)
    ds.WaveformSequence = pydicom.Sequence([ds.WaveformSequence[1]])
    assert "median" in _expect_error("WaveformSequence", read_dicom_waveform, ds).reason


# ---------------------------------------------------------------------------------------- WFDB


@pytest.mark.parametrize("name", CINC_RECORDS)
def test_cinc_record_path_and_zip(cinc_dir, name):
    from_hea = read_wfdb(cinc_dir / f"{name}.hea")
    from_stem = read_wfdb(str(cinc_dir / name))
    from_zip = read_wfdb(_cinc_zip(cinc_dir, name))
    for record in (from_hea, from_stem, from_zip):
        assert record.leads == STANDARD_LEADS
        assert record.sampling_rate == 500.0
        assert record.signals.shape == (12, 5000)
        assert record.meta["format"] == "wfdb"
        assert record.meta["label_system"] == "SNOMED-CT"
        assert record.labels and all(code.isdigit() for code in record.labels)
        assert record.patient.get("sex") in ("M", "F")
        json.dumps(record.meta), json.dumps(record.patient)
    np.testing.assert_array_equal(from_hea.signals, from_zip.signals)
    np.testing.assert_array_equal(from_hea.signals, from_stem.signals)
    header = (cinc_dir / f"{name}.hea").read_text()
    dx = next(line for line in header.splitlines() if line.startswith("# Dx:"))
    assert from_hea.labels == [c.strip() for c in dx.split(":", 1)[1].split(",")]
    validated = validate_record(from_zip)
    assert validated.leads == STANDARD_LEADS
    assert np.abs(validated.signals).max() < 20


def test_cinc_header_fields(cinc_dir):
    record = read_wfdb(cinc_dir / "E07500.hea")
    assert record.patient == {"age": 78, "sex": "M"}
    assert record.labels == ["67741000119109", "426177001"]
    # header: 1000 adu/mV, first sample of lead I is -68 adu
    assert record.signals[0, 0] == pytest.approx(-0.068)


def test_wfdb_zip_in_folder_and_zip_path(cinc_dir, tmp_path):
    data = _cinc_zip(cinc_dir, "HR06000", folder="HR06000/")
    record = read_wfdb(data)
    assert record.meta["record_name"] == "HR06000"
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_wfdb(path).signals, record.signals)
    assert read_ecg(data, "application/zip", "HR06000.zip").meta["format"] == "wfdb"
    # macOS archive junk is ignored
    junk = _zip(
        {
            "E07501.hea": (cinc_dir / "E07501.hea").read_bytes(),
            "E07501.mat": (cinc_dir / "E07501.mat").read_bytes(),
            "__MACOSX/._E07501.hea": b"\x00\x05\x16\x07junk",
        }
    )
    assert read_wfdb(junk).meta["record_name"] == "E07501"


@pytest.mark.parametrize(
    "members, words",
    [
        ({"../evil.hea": b"x", "evil.mat": b"x"}, "unsafe"),
        ({"/etc/evil.hea": b"x"}, "unsafe"),
        ({"a\\..\\..\\evil.hea": b"x"}, "unsafe"),
        ({"readme.txt": b"hello"}, "no WFDB header"),
        ({"A.hea": b"x", "B.hea": b"y"}, "2 records"),
    ],
)
def test_wfdb_zip_problems(members, words):
    error = _expect_error("file", read_wfdb, _zip(members))
    assert words in error.reason


def test_wfdb_zip_traversal_with_real_record(cinc_dir):
    data = _zip(
        {
            "../../E07500.hea": (cinc_dir / "E07500.hea").read_bytes(),
            "E07500.mat": (cinc_dir / "E07500.mat").read_bytes(),
        }
    )
    assert "unsafe" in _expect_error("file", read_ecg, data).reason


def test_wfdb_zip_missing_signal_file_and_corrupt_zip(cinc_dir):
    data = _zip({"E07500.hea": (cinc_dir / "E07500.hea").read_bytes()})
    assert "E07500.mat" in _expect_error("file", read_wfdb, data).reason
    _expect_error("file", read_wfdb, b"PK\x03\x04" + b"\x00" * 200)
    _expect_error("file", read_wfdb, Path("/nonexistent/record.hea"))


def test_wfdb_microvolt_units_and_unknown_leads(tmp_path):
    import wfdb

    rng = np.random.default_rng(1)
    signal_uv = rng.normal(0, 300, size=(5000, 12)).round()
    wfdb.wrsamp(
        "uvrec",
        fs=500,
        units=["uV"] * 12,
        sig_name=list(STANDARD_LEADS),
        p_signal=signal_uv,
        fmt=["16"] * 12,
        adc_gain=[1.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    record = read_wfdb(tmp_path / "uvrec.hea")
    np.testing.assert_allclose(record.signals, signal_uv.T / 1000.0, atol=1e-9)
    assert record.labels == [] and "label_system" not in record.meta
    names = ["ECG1"] + list(STANDARD_LEADS[1:])
    wfdb.wrsamp(
        "odd",
        fs=500,
        units=["mV"] * 12,
        sig_name=names,
        p_signal=signal_uv / 1000,
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    assert "ECG1" in _expect_error("leads", read_wfdb, tmp_path / "odd").reason
    wfdb.wrsamp(
        "mmhg",
        fs=500,
        units=["mmHg"] * 12,
        sig_name=list(STANDARD_LEADS),
        p_signal=signal_uv / 1000,
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    _expect_error("units", read_wfdb, tmp_path / "mmhg.hea")


# ---------------------------------------------------------------------------------------- JSON


def _json_body(record, units="mV", scale=1.0) -> dict:
    return {
        "sampling_rate": record.sampling_rate,
        "units": units,
        "leads": {lead: (record.lead(lead) * scale).tolist() for lead in record.leads},
        "patient": {"id": "P1", "age": 70},
        "site": "demo",
    }


def test_json_round_trip(cinc_dir):
    source = read_wfdb(cinc_dir / "E07502.hea")
    body = json.dumps(_json_body(source)).encode()
    for record in (
        read_json(json.loads(body)),
        read_ecg(body),
        read_ecg(b"  \n" + body, "text/plain"),
        read_ecg(body, "application/json; charset=utf-8"),
    ):
        assert record.meta == {"format": "json", "site": "demo"}
        assert record.patient == {"id": "P1", "age": 70}
        assert record.leads == STANDARD_LEADS
        assert record.sampling_rate == 500.0
        np.testing.assert_array_equal(record.signals, source.signals)
    in_uv = read_json(_json_body(source, units="uV", scale=1000.0))
    np.testing.assert_allclose(in_uv.signals, source.signals, atol=1e-12)
    # lead names are normalised, order kept as sent
    body = _json_body(source)
    body["leads"] = {name.upper(): body["leads"][name] for name in reversed(STANDARD_LEADS)}
    record = read_json(body)
    assert record.leads == tuple(reversed(STANDARD_LEADS))
    np.testing.assert_array_equal(validate_record(record).signals, source.signals)


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda b: b.update(sampling_rate="500"), "sampling_rate", "number"),
        (lambda b: b.update(sampling_rate=True), "sampling_rate", "number"),
        (lambda b: b.update(sampling_rate=-5), "sampling_rate", "positive"),
        (lambda b: b.pop("sampling_rate"), "sampling_rate", "missing"),
        (lambda b: b["leads"]["V2"].__setitem__(10, "x"), "leads.V2", "string"),
        (lambda b: b["leads"].__setitem__("V2", "1,2,3"), "leads.V2", "list of numbers"),
        (lambda b: b["leads"].__setitem__("V2", [[1, 2], [3, 4]]), "leads.V2", "nested"),
        (lambda b: b["leads"].__setitem__("V2", [True] * 5000), "leads.V2", "boolean"),
        (lambda b: b["leads"].__setitem__("V2", []), "leads.V2", "no samples"),
        (lambda b: b["leads"].__setitem__("V5", b["leads"]["V5"][:-1]), "leads.V5", "4999 samples"),
        (lambda b: b["leads"].__setitem__("X7", b["leads"]["V5"]), "leads", "'X7'"),
        (lambda b: b.update(leads=[1, 2, 3]), "leads", "object"),
        (lambda b: b.update(leads={}), "leads", "no leads"),
        (lambda b: b.pop("leads"), "leads", "missing"),
        (lambda b: b.update(units="V"), "units", "'V'"),
        (lambda b: b.update(patient="John"), "patient", "object"),
        (lambda b: b.update(site=3), "site", "string"),
    ],
)
def test_json_type_errors_name_the_field(cinc_dir, mutate, field, words):
    body = _json_body(read_wfdb(cinc_dir / "E07503.hea"))
    mutate(body)
    error = _expect_error(field, read_json, body)
    assert words in error.reason


def test_json_null_samples_become_nan_for_validation(cinc_dir):
    body = _json_body(read_wfdb(cinc_dir / "E07503.hea"))
    body["leads"]["aVL"][100:103] = [None, None, None]
    record = read_json(body)
    assert np.isnan(record.lead("aVL")).sum() == 3
    error = _expect_error("signals.aVL", validate_record, record)
    assert "3 of 5000" in error.reason


def test_json_not_an_object_and_bad_json():
    _expect_error("file", read_json, [1, 2, 3])
    assert "JSON" in _expect_error("file", read_ecg, b"{not json", "application/json").reason
    _expect_error("file", read_ecg, b"[1, 2]", "application/json")
    _expect_error("file", read_ecg, b"\xff\xfe{", "application/json")

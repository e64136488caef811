"""measure() on the 30 real CinC 2021 records and pydicom's ECG: rates against the SNOMED labels."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.measure import MEASURE_KEYS, measure
from datasets.ecg.readers import read_dicom_waveform, read_wfdb
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.validate import validate_record
from tests.conftest import shared_data_dir

CINC_DIR = shared_data_dir() / "ecg" / "cinc2021"
CINC_RECORDS = sorted(p.stem for p in CINC_DIR.glob("*.hea"))

SINUS_TACHYCARDIA = "427084000"
SINUS_BRADYCARDIA = "426177001"
SINUS_RHYTHM = "426783006"
RBBB = "59118001"


@pytest.fixture(scope="module")
def measured(cinc_dir) -> dict[str, tuple[EcgRecord, dict, float]]:
    """Every CinC record read, validated and measured once (with the time measure() took)."""
    out = {}
    measure(validate_record(read_wfdb(cinc_dir / f"{CINC_RECORDS[0]}.hea")))  # import / first-call warm-up
    for name in CINC_RECORDS:
        record = validate_record(read_wfdb(cinc_dir / f"{name}.hea"))
        start = time.perf_counter()
        result = measure(record)
        out[name] = (record, result, time.perf_counter() - start)
    return out


def _check_shape(result: dict) -> None:
    for key in MEASURE_KEYS:
        assert key in result
    assert isinstance(result["warnings"], list)
    assert json.loads(json.dumps(result)) == result  # plain JSON types only
    for key in ("heart_rate_bpm", "rr_mean_ms", "rr_sd_ms", "rr_irregularity", "qrs_duration_ms", "quality"):
        assert result[key] is None or isinstance(result[key], float)
    assert result["n_beats"] is None or isinstance(result["n_beats"], int)


@pytest.mark.parametrize("name", CINC_RECORDS)
def test_cinc_measurements(measured, name):
    record, result, _ = measured[name]
    _check_shape(result)
    assert "error" not in result, result
    assert result["lead"] in STANDARD_LEADS
    assert 0.0 <= result["quality"] <= 1.0
    assert 30 <= result["heart_rate_bpm"] <= 200
    assert result["n_beats"] >= 5
    assert result["rr_mean_ms"] == pytest.approx(60000 / result["heart_rate_bpm"], rel=1e-3)
    assert result["rr_sd_ms"] >= 0 and result["rr_irregularity"] >= 0
    # n_beats in 10 s agrees with the rate (first to last R peak spans n_beats - 1 intervals)
    assert (result["n_beats"] - 1) * result["rr_mean_ms"] <= record.duration_s * 1000
    if result["qrs_duration_ms"] is not None:
        assert 40 <= result["qrs_duration_ms"] <= 250
    if SINUS_TACHYCARDIA in record.labels:
        assert result["heart_rate_bpm"] > 100
    if SINUS_BRADYCARDIA in record.labels:
        assert result["heart_rate_bpm"] < 60


def test_label_coverage():
    """The sample holds both rate labels, so the parametrized checks above are not vacuous."""
    labels = [read_wfdb(CINC_DIR / f"{name}.hea").labels for name in CINC_RECORDS]
    assert sum(SINUS_TACHYCARDIA in codes for codes in labels) >= 5
    assert sum(SINUS_BRADYCARDIA in codes for codes in labels) >= 4


def test_qrs_duration_population(measured):
    normal = [result["qrs_duration_ms"] for record, result, _ in measured.values()
              if record.labels == [SINUS_RHYTHM] and result["qrs_duration_ms"] is not None]
    assert len(normal) >= 8
    assert 70 <= float(np.median(normal)) <= 110
    wide = [result["qrs_duration_ms"] for record, result, _ in measured.values() if RBBB in record.labels]
    assert wide and all(q is not None and q >= 120 for q in wide)
    measured_share = np.mean([result["qrs_duration_ms"] is not None for _, result, _ in measured.values()])
    assert measured_share >= 0.8


def test_regular_rhythms_are_regular(measured):
    values = [result["rr_irregularity"] for record, result, _ in measured.values() if record.labels == [SINUS_RHYTHM]]
    assert float(np.median(values)) < 0.05


def test_speed_guard(measured):
    """Serving needs ~100 ms; this only guards against an order-of-magnitude regression on a busy CI box."""
    mean_s = float(np.mean([elapsed for _, _, elapsed in measured.values()]))
    assert mean_s < 1.0, f"measure() took {mean_s * 1000:.0f} ms per record"


def test_dicom_ecg():
    record = validate_record(read_dicom_waveform(get_testdata_file("waveform_ecg.dcm")))
    result = measure(record)
    _check_shape(result)
    assert "error" not in result
    assert result["lead"] == "II"
    assert 50 <= result["heart_rate_bpm"] <= 80  # 10 beats in 10 s
    assert result["n_beats"] >= 9


def test_falls_back_when_lead_ii_is_poor_or_missing(measured):
    record, reference, _ = measured["HR06008"]
    noisy = record.signals.copy()
    noisy[STANDARD_LEADS.index("II")] = np.random.default_rng(3).normal(0, 0.5, record.signals.shape[1])
    result = measure(EcgRecord(noisy, record.leads, record.sampling_rate))
    assert "error" not in result
    assert result["lead"] != "II"
    assert any("lead II" in note for note in result["warnings"])
    assert result["heart_rate_bpm"] == pytest.approx(reference["heart_rate_bpm"], abs=3)

    without = EcgRecord(np.delete(record.signals, 1, axis=0), tuple(n for n in record.leads if n != "II"), 500.0)
    result = measure(without)
    assert result["lead"] != "II" and "not available" in result["warnings"][0]
    assert result["heart_rate_bpm"] == pytest.approx(reference["heart_rate_bpm"], abs=3)


@pytest.mark.parametrize("signals, rate", [
    (np.zeros((12, 5000)), 500.0),                       # flat
    (np.full((12, 5000), np.nan), 500.0),                # no numbers
    (np.random.default_rng(0).normal(size=(12, 300)), 500.0),  # 0.6 s of noise
    (np.zeros((12, 0)), 500.0),                          # empty
    (np.zeros((12, 5000)), 0.0),                         # no rate
])
def test_never_raises(signals, rate):
    result = measure(EcgRecord(signals, STANDARD_LEADS, rate))
    _check_shape(result)
    assert isinstance(result["error"], str) and result["error"]
    assert all(result[key] is None for key in MEASURE_KEYS)

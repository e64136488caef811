"""validate_record on real records (CinC 2021, pydicom's ECG) and on broken variants of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.errors import EcgInputError
from datasets.ecg.readers import read_dicom_waveform, read_ecg, read_json, read_wfdb
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.validate import ValidationRules, validate_record


@pytest.fixture(scope="module")
def real(cinc_dir) -> EcgRecord:
    return read_wfdb(cinc_dir / "HR06005.hea")


def _subset(record: EcgRecord, leads) -> EcgRecord:
    return EcgRecord(
        signals=np.vstack([record.lead(name) for name in leads]),
        leads=tuple(leads),
        sampling_rate=record.sampling_rate,
        patient=dict(record.patient),
        meta=dict(record.meta),
        labels=list(record.labels),
    )


def _with(record: EcgRecord, **changes) -> EcgRecord:
    values = dict(
        signals=record.signals.copy(),
        leads=record.leads,
        sampling_rate=record.sampling_rate,
        patient=dict(record.patient),
        meta=dict(record.meta),
        labels=list(record.labels),
    )
    values.update(changes)
    return EcgRecord(**values)


def _expect(field: str, record: EcgRecord, rules: ValidationRules | None = None) -> EcgInputError:
    with pytest.raises(EcgInputError) as info:
        validate_record(record, rules) if rules else validate_record(record)
    assert info.value.field == field, str(info.value)
    return info.value


def test_defaults():
    rules = ValidationRules()
    assert (rules.min_rate, rules.max_rate, rules.min_seconds, rules.max_abs_mv, rules.derive_limb_leads) == (
        100,
        2000,
        8.0,
        20.0,
        True,
    )


def test_valid_record_passes_unchanged(real):
    before = real.signals.copy()
    out = validate_record(real)
    assert out is not real
    assert out.leads == STANDARD_LEADS
    np.testing.assert_array_equal(out.signals, real.signals)
    np.testing.assert_array_equal(real.signals, before)
    assert out.labels == real.labels and out.patient == real.patient
    assert "derived_leads" not in out.meta and "flat_leads" not in out.meta


def test_reorders_to_standard_order(real):
    shuffled = _subset(real, ["V6", "aVF", "II", "I", "V1", "V2", "III", "aVL", "aVR", "V3", "V5", "V4"])
    out = validate_record(shuffled)
    assert out.leads == STANDARD_LEADS
    np.testing.assert_array_equal(out.signals, real.signals)
    # lower/upper-case names are accepted too
    renamed = _with(real, leads=tuple(name.upper() for name in STANDARD_LEADS))
    assert validate_record(renamed).leads == STANDARD_LEADS


def test_dicom_record_validates():
    out = validate_record(read_dicom_waveform(get_testdata_file("waveform_ecg.dcm")))
    assert out.leads == STANDARD_LEADS and out.sampling_rate == 1000.0


def test_three_lead_json_names_missing_leads(real):
    body = {"sampling_rate": 500, "leads": {name: real.lead(name).tolist() for name in ("I", "II", "III")}}
    error = _expect("leads", read_ecg(json.dumps(body).encode(), "application/json"))
    missing = ("aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    for name in missing:
        assert name in error.reason
    assert error.reason.startswith("missing lead(s) " + ", ".join(missing))


def test_limb_leads_derived_from_i_and_ii(real):
    eight = _subset(real, ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"])
    out = validate_record(eight)
    assert out.leads == STANDARD_LEADS
    assert out.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    lead_i, lead_ii = real.lead("I"), real.lead("II")
    np.testing.assert_allclose(out.lead("III"), lead_ii - lead_i)
    np.testing.assert_allclose(out.lead("aVR"), -(lead_i + lead_ii) / 2)
    np.testing.assert_allclose(out.lead("aVL"), lead_i - lead_ii / 2)
    np.testing.assert_allclose(out.lead("aVF"), lead_ii - lead_i / 2)
    # the cart's own limb leads agree with Einthoven/Goldberger within quantisation (1 µV steps)
    for name in ("III", "aVR", "aVL", "aVF"):
        np.testing.assert_allclose(out.lead(name), real.lead(name), atol=0.002)
    # only some missing: only those are derived
    out = validate_record(_subset(real, [n for n in STANDARD_LEADS if n != "aVL"]))
    assert out.meta["derived_leads"] == ["aVL"]
    # switched off: an error naming them
    error = _expect("leads", eight, ValidationRules(derive_limb_leads=False))
    assert "III, aVR, aVL, aVF" in error.reason


def test_chest_lead_missing_is_an_error(real):
    error = _expect("leads", _subset(real, [n for n in STANDARD_LEADS if n not in ("V3", "aVR")]))
    assert "V3" in error.reason and "aVR" in error.reason
    assert "cannot" in error.reason  # explains that only the limb leads can be computed
    error = _expect("leads", _subset(real, [n for n in STANDARD_LEADS if n != "I"]))
    assert error.reason.startswith("missing lead(s) I;")


def test_unknown_and_duplicate_leads(real):
    error = _expect(
        "leads", _with(real, leads=("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V4R"))
    )
    assert "'V4R'" in error.reason
    error = _expect(
        "leads", _with(real, leads=("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "v5"))
    )
    assert "more than once" in error.reason and "V5" in error.reason


def test_shape_mismatch(real):
    _expect("signals", _with(real, leads=STANDARD_LEADS[:11]))
    _expect("signals", _with(real, signals=real.signals[0]))


@pytest.mark.parametrize("rate", [50, 99.9, 2001, 5000, float("nan")])
def test_sampling_rate_out_of_range(real, rate):
    error = _expect("sampling_rate", _with(real, sampling_rate=rate))
    assert "100-2000 Hz" in error.reason


def test_sampling_rate_50hz_from_json(real):
    body = {"sampling_rate": 50, "leads": {name: real.lead(name)[:500].tolist() for name in STANDARD_LEADS}}
    error = _expect("sampling_rate", read_json(body))
    assert "50 Hz" in error.reason


def test_one_second_record(real):
    short = _with(real, signals=real.signals[:, :500])
    error = _expect("duration", short)
    assert "1.00 s" in error.reason and "8 s" in error.reason
    assert validate_record(short, ValidationRules(min_seconds=1.0)).duration_s == pytest.approx(1.0)


def test_nan_names_the_lead(real):
    signals = real.signals.copy()
    signals[STANDARD_LEADS.index("V3"), 1000:1010] = np.nan
    signals[STANDARD_LEADS.index("V5"), 7] = np.inf
    error = _expect("signals.V3", _with(real, signals=signals))
    assert "lead V3: 10 of 5000" in error.reason and "lead V5: 1 of 5000" in error.reason


def test_absurd_amplitude_names_lead_and_value(real):
    signals = real.signals.copy()
    signals[STANDARD_LEADS.index("aVF"), 2000] = 57.3
    error = _expect("signals.aVF", _with(real, signals=signals))
    assert "57.3 mV" in error.reason and "20 mV" in error.reason
    # microvolts sent as millivolts: every lead is 1000x too large
    error = _expect("signals.I", _with(real, signals=real.signals * 1000))
    assert "units" in error.reason


def test_flat_record_and_one_flat_lead(real):
    error = _expect("signals", _with(real, signals=np.zeros_like(real.signals)))
    assert "flat" in error.reason
    _expect("signals", _with(real, signals=np.full_like(real.signals, 0.25)))
    signals = real.signals.copy()
    signals[STANDARD_LEADS.index("V2")] = 0.0
    out = validate_record(_with(real, signals=signals))
    assert out.meta["flat_leads"] == ["V2"]


def test_integer_signals_are_accepted(real):
    out = validate_record(_with(real, signals=(real.signals * 4).round().astype(np.int32)))
    assert out.signals.dtype == np.float64

"""Quality before interpretation, on real records: clean ones pass; hand-built faults (arm electrodes
swapped, noisy, flat and clipped leads, baseline wander, a short strip) are flagged with the leads and
the action the clinic must take."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.ecg.measure import measure
from datasets.ecg.quality import assess_quality, lead_span
from datasets.vocabulary import QualityReason
from evaluation.ecg_measurements import ptbxl_records
from tests.conftest import shared_data_dir
from tests.datasets.ecg_helpers import (
    CINC_RECORDS,
    L,
    add_muscle_noise,
    cinc,
    mortara,
    reverse_arm_electrodes,
    with_signals,
)


def verdict(record):
    return assess_quality(measure(record), record.duration_s)


def codes(v) -> set[QualityReason]:
    return {p.code for p in v.problems}


@pytest.mark.parametrize("name", CINC_RECORDS)
def test_real_records_are_acceptable(name):
    v = verdict(cinc(name))
    assert v.acceptable, v
    assert QualityReason.ECG_LIMB_LEAD_REVERSAL not in codes(v)


def test_mortara_and_most_ptbxl_records_are_acceptable():
    assert verdict(mortara()).acceptable
    results = [verdict(record).acceptable for _, _, record in ptbxl_records(shared_data_dir(), folds=(1, 2))]
    assert len(results) >= 80 and np.mean(results) >= 0.95


@pytest.mark.parametrize("name", ["E07506", "HR06004", "E07515"])
def test_arm_electrode_reversal_is_flagged(name):
    v = verdict(reverse_arm_electrodes(cinc(name)))
    assert QualityReason.ECG_LIMB_LEAD_REVERSAL in codes(v)
    assert not v.acceptable and "Repeat the ECG" in v.action and "arm electrodes" in v.action


def test_reversal_check_on_the_mortara_ecg():
    assert QualityReason.ECG_LIMB_LEAD_REVERSAL not in codes(verdict(mortara()))
    assert QualityReason.ECG_LIMB_LEAD_REVERSAL in codes(verdict(reverse_arm_electrodes(mortara())))


def test_noisy_chest_leads_make_it_unreadable():
    v = verdict(add_muscle_noise(cinc("HR06004"), ["V1", "V2", "V3"]))
    assert not v.acceptable
    noisy = [p for p in v.problems if p.code == QualityReason.ECG_NOISY_LEAD]
    assert noisy and noisy[0].leads == ["V1", "V2", "V3"]
    assert v.action == "Repeat the ECG: leads V1–V3 noisy"


def test_one_noisy_lead_is_reported_but_readable():
    v = verdict(add_muscle_noise(cinc("E07506"), ["V5"]))
    assert v.acceptable and v.action is None
    (noisy,) = [p for p in v.problems if p.code == QualityReason.ECG_NOISY_LEAD]
    assert noisy.leads == ["V5"] and not noisy.blocking


def test_flat_and_clipped_leads():
    record = cinc("HR06008")
    x = record.signals.copy()
    x[L["V4"]] = 0.0
    v = verdict(with_signals(record, x))
    assert [p.leads for p in v.problems if p.code == QualityReason.ECG_FLAT_LEAD] == [["V4"]] and v.acceptable
    x[[L["V5"], L["V6"]]] = 0.0
    v = verdict(with_signals(record, x))
    assert not v.acceptable and "V4–V6 no signal" in v.action
    y = record.signals.copy()
    for name in ("II", "aVF", "V2"):
        row = y[L[name]]
        y[L[name]] = np.clip(row, np.percentile(row, 3), np.percentile(row, 97))
    v = verdict(with_signals(record, y))
    assert {"II", "aVF", "V2"} <= {
        lead for p in v.problems if p.code == QualityReason.ECG_SATURATED_LEAD for lead in p.leads
    }
    assert not v.acceptable


def test_baseline_wander_is_reported_not_blocking():
    record = cinc("E07515")
    t = np.arange(record.signals.shape[1]) / record.sampling_rate
    x = record.signals.copy()
    x[L["V1"]] += 2.5 * np.sin(2 * np.pi * 0.3 * t)
    v = verdict(with_signals(record, x))
    assert v.acceptable
    assert [p.leads for p in v.problems if p.code == QualityReason.ECG_BASELINE_WANDER] == [["V1"]]


def test_too_short_and_no_beats():
    v = verdict(with_signals(cinc("E07506"), cinc("E07506").signals, seconds=5))
    assert QualityReason.ECG_TOO_SHORT in codes(v) and not v.acceptable
    flat = with_signals(cinc("E07506"), np.zeros_like(cinc("E07506").signals))
    v = verdict(flat)
    assert QualityReason.ECG_NO_BEATS in codes(v) and not v.acceptable


def test_lead_span_words():
    assert lead_span(["V3", "V1", "V2"]) == "V1–V3"
    assert lead_span(["II", "V2"]) == "II, V2"
    assert lead_span(["V1", "V3", "V4"]) == "V1, V3, V4"

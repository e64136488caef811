"""Statements on real records against their labels, and against their own definitions: a model that
called AF on every ECG, or sinus tachycardia from a probability, would fail here."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.ecg.measure import EcgMeasurements, measure
from datasets.ecg.measure.beats import ANALYSIS_RATE
from datasets.ecg.record import STANDARD_LEADS
from datasets.vocabulary.ecg_statements import EcgStatement as S
from evaluation.ecg_measurements import ptbxl_records
from models.ecg.statements import Patient, interpret, reconcile
from models.read import Finding
from tests.conftest import shared_data_dir
from tests.datasets.ecg_helpers import (
    ATRIAL_FIBRILLATION,
    CINC_RECORDS,
    SINUS_BRADYCARDIA,
    SINUS_LABELS,
    SINUS_TACHYCARDIA,
    add_st_elevation,
    cinc,
    mortara,
)

SINUS = {S.SINUS_RHYTHM.value, S.SINUS_BRADYCARDIA.value, S.SINUS_TACHYCARDIA.value}


def made(record, patient: Patient | None = None, m: EcgMeasurements | None = None) -> dict[str, dict]:
    m = m or measure(record)
    sex = record.patient.get("sex")
    patient = patient or Patient(sex=sex if sex in ("M", "F") else None, age=record.patient.get("age"))
    return {s.code: s.evidence for s in interpret(m, {}, {}, patient)}


@pytest.mark.parametrize("name", CINC_RECORDS)
def test_cinc_rhythm_statements_match_labels_and_definitions(name):
    record = cinc(name)
    m = measure(record)
    stated = made(record, m=m)
    hr = m.values["heart_rate_bpm"]
    assert S.ATRIAL_FIBRILLATION.value not in stated or ATRIAL_FIBRILLATION in record.labels
    if set(record.labels) & SINUS_LABELS or record.labels == []:
        assert stated.keys() & SINUS, stated
    # definitions, both ways: never sinus tachycardia under 100 bpm, never missing over 100 in sinus
    assert (S.SINUS_TACHYCARDIA.value in stated) == (bool(stated.keys() & SINUS) and hr > 100)
    assert (S.SINUS_BRADYCARDIA.value in stated) == (bool(stated.keys() & SINUS) and hr < 60)
    if SINUS_TACHYCARDIA in record.labels:
        assert S.SINUS_TACHYCARDIA.value in stated
    if SINUS_BRADYCARDIA in record.labels:
        assert S.SINUS_BRADYCARDIA.value in stated
    for evidence in stated.values():
        assert evidence, "every statement carries the evidence that triggered it"


def test_mortara_ecg_is_normal_sinus_rhythm():
    """The Mortara cart said "RITMO SINUSALE, ECG NORMALE"."""
    stated = made(mortara())
    assert S.SINUS_RHYTHM.value in stated
    assert not stated.keys() - {S.SINUS_RHYTHM.value}, stated


@pytest.fixture(scope="module")
def ptbxl() -> list[tuple[dict, dict[str, dict]]]:
    return [(scp, made(record)) for _, scp, record in ptbxl_records(shared_data_dir())]


def test_ptbxl_norm_records_are_sinus_without_af_or_stemi(ptbxl):
    norm = [stated for scp, stated in ptbxl if scp.get("NORM", 0) >= 80 and "SR" in scp]
    assert len(norm) >= 150
    assert not any(S.ATRIAL_FIBRILLATION.value in s for s in norm)
    assert np.mean([bool(s.keys() & SINUS) for s in norm]) >= 0.95
    assert sum(S.ST_ELEVATION.value in s for s in norm) <= 1


def test_ptbxl_af_records(ptbxl):
    af = [stated for scp, stated in ptbxl if "AFIB" in scp and "NORM" not in scp]
    assert len(af) >= 8
    assert np.mean([S.ATRIAL_FIBRILLATION.value in s for s in af]) >= 0.6
    assert not any(s.keys() & SINUS for s in af), "no AF record is called sinus"
    not_af = [stated for scp, stated in ptbxl if not {"AFIB", "AFLT"} & set(scp)]
    assert np.mean([S.ATRIAL_FIBRILLATION.value in s for s in not_af]) <= 0.01


def test_ptbxl_bundle_branch_blocks(ptbxl):
    for code, statement in (("CRBBB", S.RBBB), ("CLBBB", S.LBBB)):
        records = [stated for scp, stated in ptbxl if code in scp]
        assert len(records) >= 5 and np.mean([statement.value in s for s in records]) >= 0.8, code


def test_ptbxl_paced_records(ptbxl):
    paced = [stated for scp, stated in ptbxl if "PACE" in scp]
    assert len(paced) >= 4 and all(S.PACED_RHYTHM.value in s for s in paced)
    assert not any(S.PACED_RHYTHM.value in stated for scp, stated in ptbxl if "PACE" not in scp)


def _r_peaks(record) -> np.ndarray:
    from datasets.ecg.measure import beats as bt

    x = bt.diagnostic_filter(bt.to_analysis_rate(record.signals, record.sampling_rate))
    return bt.detect_r_peaks(x) * record.sampling_rate / ANALYSIS_RATE


def test_hand_built_inferior_st_elevation():
    record = cinc("HR06004")
    assert S.ST_ELEVATION.value not in made(record)
    stemi = add_st_elevation(record, {"II": 0.25, "III": 0.25}, _r_peaks(record))
    evidence = made(stemi)[S.ST_ELEVATION.value]
    assert {"II", "III", "aVF"} <= set(evidence["leads"])


def test_st_elevation_limits_in_v2_v3_depend_on_sex():
    record = cinc("E07506")
    raised = add_st_elevation(record, {"V2": 0.17, "V3": 0.17}, _r_peaks(record))
    m = measure(raised)
    assert S.ST_ELEVATION.value in made(raised, Patient("F", 60), m)
    assert S.ST_ELEVATION.value not in made(raised, Patient("M", 60), m)


def _values(**values) -> EcgMeasurements:
    m = EcgMeasurements()
    m.values.update(values)
    m.leads = {
        name: {
            "p_amp_mv": 0.1,
            "q_amp_mv": 0.0,
            "r_amp_mv": 1.0,
            "s_amp_mv": -0.2,
            "st_j_mv": 0.0,
            "st_j60_mv": 0.0,
            "t_amp_mv": 0.2,
        }
        for name in STANDARD_LEADS
    }
    return m


SINUS_70 = {
    "heart_rate_bpm": 70.0,
    "rr_successive_irregularity": 0.02,
    "p_wave_consistency": 0.95,
    "pr_interval_ms": 160,
    "p_axis_deg": 50,
    "qrs_duration_ms": 90,
    "qtc_bazett_ms": 420,
    "qrs_axis_deg": 40,
    "qrs_limb_max_mv": 1.0,
    "qrs_precordial_max_mv": 1.5,
    "sokolow_lyon_mv": 2.0,
    "cornell_mv": 1.0,
}


@pytest.mark.parametrize(
    "change, expected, absent",
    [
        ({}, S.SINUS_RHYTHM, S.SINUS_TACHYCARDIA),
        ({"heart_rate_bpm": 120.0}, S.SINUS_TACHYCARDIA, S.SINUS_RHYTHM),
        ({"heart_rate_bpm": 50.0}, S.SINUS_BRADYCARDIA, S.SINUS_RHYTHM),
        ({"rr_successive_irregularity": 0.2, "p_wave_consistency": 0.1}, S.ATRIAL_FIBRILLATION, S.SINUS_RHYTHM),
        ({"rr_successive_irregularity": 0.02, "p_wave_consistency": 0.1}, S.RHYTHM_UNDETERMINED, S.ATRIAL_FIBRILLATION),
        ({"rr_successive_irregularity": 0.2, "p_wave_consistency": 0.95}, S.SINUS_RHYTHM, S.ATRIAL_FIBRILLATION),
        ({"pr_interval_ms": 240}, S.FIRST_DEGREE_AV_BLOCK, S.SINUS_TACHYCARDIA),
        ({"pr_interval_ms": 200}, S.SINUS_RHYTHM, S.FIRST_DEGREE_AV_BLOCK),
        ({"qrs_axis_deg": -50}, S.LEFT_AXIS_DEVIATION, S.RIGHT_AXIS_DEVIATION),
        ({"qrs_axis_deg": 120}, S.RIGHT_AXIS_DEVIATION, S.LEFT_AXIS_DEVIATION),
        ({"qrs_limb_max_mv": 0.4}, S.LOW_VOLTAGE, S.LVH_VOLTAGE),
        ({"sokolow_lyon_mv": 3.8}, S.LVH_VOLTAGE, S.LOW_VOLTAGE),
        ({"qtc_bazett_ms": 470}, S.QTC_PROLONGED, S.LOW_VOLTAGE),
        ({"qtc_bazett_ms": 455}, S.SINUS_RHYTHM, S.QTC_PROLONGED),  # sex unknown: the women's 460 ms
    ],
)
def test_definitions(change, expected, absent):
    stated = {s.code for s in interpret(_values(**{**SINUS_70, **change}), {}, {})}
    assert expected.value in stated and absent.value not in stated


def test_af_with_rapid_response():
    stated = {
        s.code
        for s in interpret(
            _values(
                **{**SINUS_70, "heart_rate_bpm": 140.0, "rr_successive_irregularity": 0.25, "p_wave_consistency": 0.0}
            ),
            {},
            {},
        )
    }
    assert {S.ATRIAL_FIBRILLATION.value, S.AF_RAPID_RESPONSE.value} <= stated


def _finding(code: str, p: float, threshold: float = 0.5) -> Finding:
    return Finding(code=code, name=code, probability=p, threshold=threshold, positive=p >= threshold)


def test_findings_never_contradict_the_definitions():
    """Network says sinus tachycardia 0 % at 120 bpm, AF 99 % in sinus rhythm, ST elevation 95 % with
    no ST elevation: the read says sinus tachycardia (by definition), no AF, no ST elevation."""
    network = {"STACH": 0.0, "AF": 0.99, "STE": 0.95, "NORM": 0.7}
    statements = interpret(_values(**{**SINUS_70, "heart_rate_bpm": 120.0}), network, {})
    findings = reconcile([_finding(code, p) for code, p in network.items()], statements)
    by = {f.code: f for f in findings}
    assert by["STACH"].positive and by["STACH"].probability == 1.0 and by["STACH"].source == "rule"
    assert by["STACH"].network_probability == 0.0
    assert not by["AF"].positive and by["AF"].probability == 0.0 and by["AF"].network_probability == 0.99
    assert not by["STE"].positive and by["STE"].network_probability == 0.95
    assert by["NORM"].positive and by["NORM"].source == "network"
    (tachy,) = [s for s in statements if s.code == S.SINUS_TACHYCARDIA.value]
    assert tachy.source == "rule+network" and tachy.evidence["network_probability"] == {"STACH": 0.0}
    assert tachy.evidence["heart_rate_bpm"] == 120.0


def test_a_normal_ecg_is_not_called_beside_a_bundle_branch_block():
    statements = interpret(_values(**{**SINUS_70, "qrs_duration_ms": 150}), {}, {})
    assert (
        S.WIDE_QRS.value in {st.code for st in statements}
        or S.LBBB.value in {st.code for st in statements}
        or S.RBBB.value in {st.code for st in statements}
    )
    (norm,) = reconcile([_finding("NORM", 0.9)], statements)
    assert not norm.positive and norm.network_probability == 0.9
    (norm,) = reconcile([_finding("NORM", 0.9)], interpret(_values(**SINUS_70), {}, {}))
    assert norm.positive and norm.source == "network"

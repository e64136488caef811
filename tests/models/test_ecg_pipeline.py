"""The whole ECG read (models/ecg/pipeline.py) on real records with stand-in networks whose outputs we
choose: the read's findings, statements and level must follow the measurements and the quality, not a
network that calls AF (or ST elevation, or nothing) on every ECG."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.vocabulary import QualityReason, TriageLevel
from datasets.vocabulary.ecg_statements import EcgStatement as S
from models.ecg.pipeline import EcgInput, EcgPreReader
from models.read import PreRead
from models.triage import TriageRules
from tests.conftest import REPO_ROOT
from tests.datasets.ecg_helpers import (
    CINC_RECORDS,
    SINUS_LABELS,
    add_muscle_noise,
    add_st_elevation,
    cinc,
    reverse_arm_electrodes,
)
from tests.models.ecg_stand_ins import stand_in_card

LABELS = ["NORM", "AF", "STACH", "SBRAD", "STE", "WQRS", "PREM"]
RULES = TriageRules.from_yaml(REPO_ROOT / "configs" / "triage" / "ecg.yaml")


class Constant:
    """A stand-in network: the same probabilities for every ECG."""

    name, device = "constant", "cpu"

    def __init__(self, **probabilities: float):
        self.row = np.array([probabilities.get(code, 0.0) for code in LABELS], dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.tile(self.row, (len(batch), 1))


def reader(**probabilities: float) -> EcgPreReader:
    card = stand_in_card(LABELS)
    return EcgPreReader(Constant(**probabilities), card, RULES)


def read_all(r: EcgPreReader, records) -> list[PreRead]:
    return r.read_batch([EcgInput(x.signals, x.sampling_rate, patient=dict(x.patient)) for x in records])


@pytest.fixture(scope="module")
def sinus_records():
    return [cinc(n) for n in CINC_RECORDS if set(cinc(n).labels) & SINUS_LABELS]


def test_a_network_calling_af_everywhere_does_not_make_af(sinus_records):
    reads = read_all(reader(AF=0.99, STE=0.95), sinus_records)
    assert len(reads) >= 20
    for read in reads:
        af = next(f for f in read.findings if f.code == "AF")
        assert not af.positive and af.network_probability == pytest.approx(0.99)
        assert S.ATRIAL_FIBRILLATION.value not in {s.code for s in read.statements}
        assert not next(f for f in read.findings if f.code == "STE").positive
        assert not any("fibrillation" in r or "ST elevation" in r for r in read.triage.reasons), read.triage
    # critical stays rare: only a rule on the measurements (rate, QTc, STEMI criteria) may make it
    assert sum(read.level == TriageLevel.CRITICAL for read in reads) <= 1


def test_sinus_tachycardia_follows_the_rate_not_the_network(sinus_records):
    for read in read_all(reader(STACH=0.0, SBRAD=1.0), sinus_records):
        hr = read.measurements["heart_rate_bpm"]
        stach = next(f for f in read.findings if f.code == "STACH")
        sbrad = next(f for f in read.findings if f.code == "SBRAD")
        assert stach.positive == (hr > 100) and stach.probability == (1.0 if hr > 100 else 0.0)
        assert sbrad.positive == (hr < 60)


def test_read_fields_and_operating_point():
    (read,) = read_all(reader(NORM=0.9), [cinc("E07506")])
    assert read.modality == "ECG" and read.quality.acceptable
    for key in (
        "heart_rate_bpm",
        "pr_interval_ms",
        "p_duration_ms",
        "qrs_duration_ms",
        "qt_interval_ms",
        "qtc_bazett_ms",
        "qtc_fridericia_ms",
        "p_axis_deg",
        "qrs_axis_deg",
        "t_axis_deg",
    ):
        assert isinstance(read.measurements[key], (int, float)), key
    assert set(read.lead_measurements) == {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"}
    assert read.lead_measurements["V5"]["r_amp_mv"] > 0
    assert S.SINUS_RHYTHM.value in {s.code for s in read.statements}
    assert read.operating_point.source == "model card"
    assert read.operating_point.detail["thresholds"]["AF"] == 0.5
    assert read.level == TriageLevel.ROUTINE
    assert PreRead.model_validate(read.to_json()) == read


def test_unreadable_ecg_says_repeat_and_gets_no_findings_level():
    noisy = add_muscle_noise(cinc("HR06004"), ["V1", "V2", "V3"])
    (read,) = read_all(reader(STE=0.99, AF=0.99), [noisy])
    assert not read.quality.acceptable
    assert read.quality.action == "Repeat the ECG: leads V1–V3 noisy"
    assert QualityReason.ECG_NOISY_LEAD in {r.code for r in read.quality.reasons}
    assert read.statements == [] and not any(f.positive for f in read.findings)
    assert read.level == TriageLevel.URGENT and read.triage.reasons == [read.quality.action]


def test_reversed_arm_electrodes_are_not_interpreted():
    (read,) = read_all(reader(), [reverse_arm_electrodes(cinc("E07506"))])
    assert not read.quality.acceptable
    assert QualityReason.ECG_LIMB_LEAD_REVERSAL in {r.code for r in read.quality.reasons}
    assert S.RIGHT_AXIS_DEVIATION.value not in {s.code for s in read.statements}


def test_critical_is_earned_by_stemi_criteria():
    from tests.models.test_ecg_statements import _r_peaks

    record = cinc("HR06004")
    stemi = add_st_elevation(record, {"II": 0.25, "III": 0.25}, _r_peaks(record))
    plain, elevated = read_all(reader(STE=0.0), [record, stemi])
    assert plain.level == TriageLevel.ROUTINE
    assert elevated.level == TriageLevel.CRITICAL
    assert "ST elevation meeting STEMI criteria" in elevated.triage.reasons
    # the network's ST finding cannot be what made it critical: it said 0
    assert next(f for f in elevated.findings if f.code == "STE").probability == 0.0


def test_rate_rules_raise_the_level():
    slow = cinc("HR06002")  # 41 bpm, sinus bradycardia
    (read,) = read_all(reader(), [slow])
    assert read.measurements["heart_rate_bpm"] < 45
    assert read.level == TriageLevel.URGENT and "heart rate under 45 bpm" in read.triage.reasons

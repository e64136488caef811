"""Only findings the card says were learned from real ECGs set the ECG read's level (``ModelCard.drives_level``,
as the chest X-ray read does): a model trained on synthetic ECGs only shows its findings, flagged, but
its level comes from the measurement and statement rules alone."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.vocabulary import TriageLevel
from datasets.vocabulary.ecg import SUPERCLASS_CODES
from models.ecg.pipeline import EcgInput, EcgPreReader
from models.read import PreRead
from models.triage import TriageRules
from tests.conftest import REPO_ROOT
from tests.datasets.ecg_helpers import CINC_RECORDS, cinc
from tests.models.ecg_stand_ins import stand_in_card

LABELS = list(SUPERCLASS_CODES)  # NORM, MI, STTC, CD, HYP: none re-stated by a rule but NORM's contradictions
RULES = TriageRules.from_yaml(REPO_ROOT / "configs" / "triage" / "ecg.yaml")


class Constant:
    """A stand-in network: probability ``p`` for every label of every ECG."""

    name, device = "constant", "cpu"

    def __init__(self, p: float):
        self.p = p

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), len(LABELS)), self.p, dtype=np.float32)


def reader(p: float, learned_from_real: dict[str, bool]) -> EcgPreReader:
    card = stand_in_card(LABELS, learned_from_real)
    return EcgPreReader(Constant(p), card, RULES)


def read_all(r: EcgPreReader, names: list[str]) -> list[PreRead]:
    records = [cinc(name) for name in names]
    return r.read_batch([EcgInput(x.signals, x.sampling_rate, patient=dict(x.patient)) for x in records])


@pytest.fixture(scope="module")
def readable() -> list[str]:
    """CinC records the read can read whose level, with a silent network, is routine: only a finding
    can raise it."""
    reads = read_all(reader(0.0, {}), CINC_RECORDS)
    names = [n for n, r in zip(CINC_RECORDS, reads) if r.quality.acceptable and r.triage.level == TriageLevel.ROUTINE]
    assert len(names) >= 3, "expected a few routine real ECGs"
    return names[:4]


def test_synthetic_only_findings_are_shown_but_never_set_the_level(readable):
    silent = read_all(reader(0.0, {}), CINC_RECORDS)
    synthetic = read_all(reader(0.95, dict.fromkeys(LABELS, False)), CINC_RECORDS)
    for quiet, read in zip(silent, synthetic):
        assert all(not f.drives_level for f in read.findings)
        # the same level, score and reasons as a network that says nothing: measurement and statement
        # rules (and "repeat the ECG") still apply, no finding adds anything
        assert (read.triage.level, read.triage.score, read.triage.reasons) == (
            quiet.triage.level,
            quiet.triage.score,
            quiet.triage.reasons,
        )
    shown = {f.code: f for f in read_all(reader(0.95, dict.fromkeys(LABELS, False)), readable)[0].findings}
    assert shown["MI"].positive and shown["MI"].probability == pytest.approx(0.95)  # still shown, called


def test_findings_learned_from_real_ecgs_set_the_level(readable):
    for learned in (dict.fromkeys(LABELS, True), {}):  # {}: an older card, every label counts
        reads = read_all(reader(0.95, learned), readable)
        for read in reads:
            assert all(f.drives_level for f in read.findings)
            assert read.triage.level == TriageLevel.URGENT  # MI weighs 0.6 ≥ the urgent cut-off 0.5
            assert any(reason.startswith("MI weighted") for reason in read.triage.reasons)


def test_only_the_labels_learned_from_real_ecgs_count(readable):
    # MI learned from phantoms only, the milder CD from real ECGs: CD's weight (0.3) cannot make it urgent
    learned = {**dict.fromkeys(LABELS, True), "MI": False, "STTC": False}
    for read in read_all(reader(0.95, learned), readable):
        by_code = {f.code: f for f in read.findings}
        assert not by_code["MI"].drives_level and by_code["CD"].drives_level
        assert read.triage.level == TriageLevel.ROUTINE
        assert read.triage.score == pytest.approx(RULES.finding_weights["CD"] * 0.95, abs=1e-4)

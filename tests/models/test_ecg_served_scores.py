"""The scores an evaluation gives an ECG model (models/ecg/served_scores.py) are the read's: the fused
probability of a readable ECG, and 0 for every label of one the read calls unreadable (it calls no finding
on it, whatever the numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.vocabulary.ecg import SUPERCLASS_CODES
from models.card import InputSpec, ModelCard, TrainingData
from models.ecg.fusion import FusionHead, feature_names
from models.ecg.pipeline import EcgInput, EcgPreReader, measure_and_check
from models.ecg.served_scores import served_scores, unreadable_mask
from models.triage import TriageRules
from tests.conftest import REPO_ROOT
from tests.datasets.ecg_helpers import add_muscle_noise, cinc

LABELS = list(SUPERCLASS_CODES)
NETWORK = 0.8  # the stand-in network's probability for every label


class Constant:
    name, device = "constant", "cpu"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), len(LABELS)), NETWORK, dtype=np.float32)


def _card(head: FusionHead | None) -> ModelCard:
    return ModelCard(
        name="ecg",
        task="ecg",
        architecture="constant",
        labels=LABELS,
        label_names=LABELS,
        input=InputSpec(shape=[None, 12, 5000], preprocessing="test"),
        training_data=TrainingData(description="test", n_train=1, n_val=1, fingerprint_sha256="0" * 64),
        intended_use="test",
        fusion=head.model_dump() if head else None,
    )


@pytest.fixture(scope="module")
def items() -> list[EcgInput]:
    """A clean real ECG and the same ECG with muscle noise over V1–V3 (the read says "repeat the ECG")."""
    clean = cinc("HR06004")
    noisy = add_muscle_noise(clean, ["V1", "V2", "V3"])
    return [EcgInput(r.signals, r.sampling_rate) for r in (clean, noisy)]


@pytest.fixture(scope="module")
def head(items) -> FusionHead:
    names = feature_names(measure_and_check(items[0])[0])
    rate = names.index("heart_rate_bpm")
    coef = np.zeros((len(LABELS), len(names)))
    coef[:, rate] = 1.0
    return FusionHead(
        labels=LABELS,
        features=names,
        fill=[0.0] * len(names),
        mean=[60.0 if i == rate else 0.0 for i in range(len(names))],
        scale=[20.0] * len(names),
        coef=coef.tolist(),
        intercept=[0.0] * len(LABELS),
        network_weight=[0.5] * len(LABELS),
    )


@pytest.mark.parametrize("fused", [True, False])
def test_scores_are_the_reads(items, head, fused):
    card = _card(head if fused else None)
    rules = TriageRules.from_yaml(REPO_ROOT / "configs" / "triage" / "ecg.yaml")
    reads = EcgPreReader(Constant(), card, rules).read_batch(items)
    measured = [measure_and_check(item) for item in items]
    assert unreadable_mask(measured).tolist() == [False, True]
    assert reads[0].quality.acceptable and not reads[1].quality.acceptable
    scores = served_scores(card, Constant().predict(np.zeros((2, 1))), measured)
    shown = np.array([f.probability for f in reads[0].findings])
    assert scores[0] == pytest.approx(shown, abs=1e-4)  # the readable ECG: the read's own numbers
    assert (np.abs(scores[0] - NETWORK) > 1e-3).all() == fused  # ... which are the network's only without a head
    # the unreadable one: the read shows its numbers but calls nothing; scored 0, a negative everywhere
    assert not any(f.positive for f in reads[1].findings)
    assert (scores[1] == 0).all()


def test_rows_must_match(items, head):
    with pytest.raises(ValueError, match="2 measured ECGs"):
        served_scores(_card(head), np.full((3, len(LABELS)), 0.5), [measure_and_check(item) for item in items])

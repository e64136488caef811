"""The read applies the card's fusion head: findings combine the network with the measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.ecg.measure import measure
from datasets.ecg.readers import read_wfdb
from datasets.vocabulary.ecg import SUPERCLASS_CODES
from models.card import InputSpec, ModelCard, TrainingData
from models.ecg.fusion import FusionHead, feature_names, feature_vector
from models.ecg.pipeline import EcgInput, EcgPreReader
from models.triage import TriageRules
from tests.conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[2]


class ConstantBackend:
    name, device = "constant", "cpu"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), len(SUPERCLASS_CODES)), 0.5, dtype=np.float32)


def _card(fusion: FusionHead | None) -> ModelCard:
    return ModelCard(
        name="ecg",
        task="ecg",
        architecture="xresnet1d18",
        labels=list(SUPERCLASS_CODES),
        label_names=list(SUPERCLASS_CODES),
        input=InputSpec(shape=[None, 12, 5000], preprocessing="x"),
        training_data=TrainingData(description="test", n_train=1, n_val=1, fingerprint_sha256="0" * 64),
        intended_use="test",
        fusion=fusion.model_dump() if fusion else None,
    )


@pytest.fixture(scope="module")
def record():
    return read_wfdb(shared_data_dir() / "ecg" / "cinc2021" / "HR06000.hea").in_standard_order()


def test_card_fusion_changes_the_findings(record):
    measured = measure(record)
    names = feature_names(measured)
    assert "heart_rate_bpm" in names
    rate = names.index("heart_rate_bpm")
    coef = np.zeros((5, len(names)))
    coef[1, rate] = 1.0  # MI's measurement logit rises with the heart rate (a test head, not a model)
    head = FusionHead(
        labels=list(SUPERCLASS_CODES),
        features=names,
        fill=[0.0] * len(names),
        mean=[60.0 if i == rate else 0.0 for i in range(len(names))],
        scale=[20.0] * len(names),
        coef=coef.tolist(),
        intercept=[0.0] * 5,
        network_weight=[1.0, 0.0, 1.0, 1.0, 1.0],
    )
    rules = TriageRules.from_yaml(REPO / "configs" / "triage" / "ecg.yaml")
    item = EcgInput(record.signals, record.sampling_rate)
    plain = EcgPreReader(ConstantBackend(), _card(None), rules).read_batch([item])[0]
    fused = EcgPreReader(ConstantBackend(), _card(head), rules).read_batch([item])[0]
    by_code = {f.code: f.probability for f in fused.findings}
    assert {f.probability for f in plain.findings} == {0.5}
    expected = head.combine(np.full((1, 5), 0.5), feature_vector(measured, names)[None])[0, 1]
    assert by_code["MI"] == pytest.approx(expected, abs=1e-4) and by_code["MI"] != 0.5
    assert by_code["NORM"] == pytest.approx(0.5) and by_code["CD"] == pytest.approx(0.5)

"""Model card: validation, defaults, JSON round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from models.card import DEMO_ECG_INTENDED_USE, InputSpec, ModelCard, TrainingData, fingerprint_arrays


def make_card(**overrides) -> ModelCard:
    fields = dict(
        name="ecg",
        task="ecg",
        architecture="xresnet1d18",
        architecture_params={"width": 8},
        labels=["NORM", "AF"],
        label_names=["Normal sinus rhythm", "Atrial fibrillation or flutter"],
        thresholds={"AF": 0.3},
        input=InputSpec(
            shape=[None, 12, 5000],
            sampling_rate=500,
            window_s=10.0,
            preprocessing="datasets.ecg.transforms.ecg_preprocess",
        ),
        training_data=TrainingData(description="synthetic", n_train=10, n_val=2, fingerprint_sha256="0" * 64),
        demo=True,
        intended_use=DEMO_ECG_INTENDED_USE,
    )
    fields.update(overrides)
    return ModelCard(**fields)


def test_missing_thresholds_default_to_one_half():
    card = make_card()
    assert card.thresholds == {"AF": 0.3, "NORM": 0.5}
    assert card.threshold_vector().tolist() == pytest.approx([0.5, 0.3])


def test_round_trip_through_json(tmp_path):
    card = make_card(metrics={"val_macro_auroc": 0.91})
    path = card.save(tmp_path)
    assert path.name == "card.json"
    raw = json.loads(path.read_text())
    assert raw["demo"] is True and raw["intended_use"].startswith("DEMO model")
    assert "torch" in raw["framework"] and raw["created_at"]
    loaded = ModelCard.load(tmp_path)
    assert loaded == card


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task": "mri"}, "task"),
        ({"label_names": ["only one"]}, "label names"),
        ({"thresholds": {"STE": 0.5}}, "unknown labels"),
        ({"thresholds": {"AF": 1.5}}, r"\[0, 1\]"),
        ({"labels": ["AF", "AF"]}, "duplicate"),
    ],
)
def test_invalid_cards_are_rejected(overrides, message):
    with pytest.raises(ValidationError, match=message):
        make_card(**overrides)


def test_fingerprint_sees_values_shapes_and_dtypes():
    import numpy as np

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert fingerprint_arrays(a) == fingerprint_arrays(a.copy())
    assert fingerprint_arrays(a) != fingerprint_arrays(a.reshape(4, 3))
    assert fingerprint_arrays(a) != fingerprint_arrays(a.astype(np.float64))
    b = a.copy()
    b[0, 0] += 1
    assert fingerprint_arrays(a) != fingerprint_arrays(b)

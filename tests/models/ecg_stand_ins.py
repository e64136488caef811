"""The model card of a stand-in ECG network (a class whose outputs a test chooses), for the tests that
read real records through the whole ECG pipeline."""

from __future__ import annotations

from collections.abc import Sequence

from models.card import InputSpec, ModelCard, TrainingData


def stand_in_card(labels: Sequence[str], learned_from_real: dict[str, bool] | None = None) -> ModelCard:
    """A card for ``labels`` at threshold 0.5, 12 leads × 10 s at 500 Hz; ``learned_from_real`` as given
    (None: the field left empty, as on older cards)."""
    return ModelCard(
        name="ecg",
        task="ecg",
        architecture="constant",
        labels=list(labels),
        label_names=list(labels),
        thresholds={code: 0.5 for code in labels},
        input=InputSpec(shape=[None, 12, 5000], sampling_rate=500, window_s=10.0, preprocessing="test"),
        training_data=TrainingData(description="test", n_train=0, n_val=0, fingerprint_sha256="0" * 64),
        intended_use="test",
        learned_from_real=learned_from_real or {},
    )

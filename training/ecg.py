"""Train, export, check and register a 12-lead ECG classifier.

``train_ecg(load_train_config("configs/train/ecg-default.yaml"))`` is the default model that a fresh
``preread serve`` trains: real PTB-XL + CinC ECGs, the five PTB-XL superclasses, the network combined
with the measurement suite (``training.ecg_default``, ``training.ecg_fusion``) → ONNX + TorchScript
(parity-checked) → model card → registry (``ecg@champion``). ``configs/train/ecg-demo.yaml`` is the
older synthetic demo (simulated ECGs only).
Real data: ``data.format`` cinc (PhysioNet/CinC WFDB), ptbxl (with its folds and label sets),
dicom (waveforms + labels.csv) or worklist, read by ``datasets.sources`` (``training.data``).
Training batches are augmented (``datasets.ecg.augment``: gain, residual baseline wander, noise,
time shift), seeded from the run's checkpointed generator, so resuming stays exact.

Every input goes through ``datasets.ecg.transforms.preprocess_signals`` — the same function
serving calls — so the network never sees a different pipeline in production.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.ecg.augment import ecg_augment
from datasets.ecg.synthetic import GENERATOR_VERSION, make_synthetic_ecg_dataset
from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS, ecg_preprocess
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES, ECG_LABELS
from models.card import DEMO_ECG_INTENDED_USE, InputSpec, ModelCard
from models.ecg.factory import build_ecg_model
from models.registry import ModelRegistry, RegisteredModel
from training.common import BatchAugment
from training.config import TrainConfig
from training.data import REAL_DATA_INTENDED_USE, TrainingData, from_source, learned_labels, open_training_source
from training.ecg_default import DefaultEcgData, load_default_data
from training.ecg_fusion import auroc_with_intervals, fit_fusion
from training.finalize import evaluate_best, export_and_register
from training.loop import FitHooks
from training.metrics import choose_thresholds as choose_label_thresholds
from training.metrics import json_safe
from training.task import FitOutcome, RunPlace, TaskTrainer
from training.tensors import augmenting_inputs, split, to_tensor
from training.tensors import predict_logits as _predict_logits

log = logging.getLogger(__name__)

TEST_SEED_OFFSET = 1_000_000  # synthetic held-out test set: seed + this, never the training stream
EVAL_BATCH_SIZE = 256


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_ecg_training_data(config: TrainConfig, progress: bool = False) -> TrainingData:
    """Synthetic records (the demo) or a real layout (cinc, ptbxl, dicom, worklist) per ``config.data``."""
    data = config.data
    if data.source == "ptbxl+cinc":
        return load_default_data(config, progress=progress, held_out_fold=data.held_out_fold)
    if data.source != "synthetic":
        return from_source(open_training_source(config), config, progress=progress)
    X, Y = make_synthetic_ecg_dataset(data.n, data.seed, cache_dir=data.path, progress=progress)
    X_test = Y_test = None
    if data.test_n:
        X_test, Y_test = make_synthetic_ecg_dataset(
            data.test_n, data.seed + TEST_SEED_OFFSET, cache_dir=data.path, progress=progress
        )
    description = (
        f"Synthetic 12-lead ECGs simulated from neurokit2 beat templates (preread generator "
        f"v{GENERATOR_VERSION}), {data.n} records, seed {data.seed}"
    )
    train_index, val_index = split(len(X), data.val_fraction, data.seed)
    return TrainingData(
        X[train_index],
        Y[train_index],
        X[val_index],
        Y[val_index],
        X_test,
        Y_test,
        description=description,
        source=data.source,
        labels=list(ECG_LABEL_CODES),
        label_names=[label.name for label in ECG_LABELS],
    )


# --------------------------------------------------------------------------------------------
# Metrics and thresholds
# --------------------------------------------------------------------------------------------


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes=ECG_LABEL_CODES) -> dict[str, float]:
    """Per-label decision thresholds on validation data (``training.metrics.choose_thresholds``)."""
    return choose_label_thresholds(Y, P, method, codes)


# --------------------------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------------------------


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    return _predict_logits(model, X, device, precision, batch_size=EVAL_BATCH_SIZE)


def _pipeline_description() -> dict[str, Any]:
    steps = []
    for transform in ecg_preprocess("center").transforms:
        params = {k: v for k, v in vars(transform).items() if not k.startswith("_") and k != "rng"}
        steps.append({"name": type(transform).__name__, **params})
    return {"window_mode": "center", "steps": steps}


def build_network(config: TrainConfig, data: TrainingData) -> nn.Module:
    """The untrained ECG network for the data's labels, per ``config.model``."""
    return build_ecg_model(config.model.architecture, len(data.labels), **config.model.build_kwargs())


def fit_hooks(config: TrainConfig, data: TrainingData, place: RunPlace) -> FitHooks:
    """Batched prediction on the run's device; augmented batches when ``augment.enabled``."""
    batch_inputs = None
    if config.augment.enabled:
        a = config.augment
        augment = BatchAugment(
            ecg_augment(a.probability, a.amplitude_scale, a.baseline_wander_mv, a.noise_std_mv, a.max_shift_s)
        )
        batch_inputs = augmenting_inputs(augment, place.generator, place.device, place.replica)
    return FitHooks(predict=lambda m, X: predict_logits(m, X, place.device, place.precision), batch_inputs=batch_inputs)


def fuse_with_measurements(
    config: TrainConfig, outcome: FitOutcome, metrics: dict[str, Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    """The default model (``DefaultEcgData``): fit the fusion head that combines the network with the
    measurement suite on the training folds, tune its thresholds on validation, and report its AUROCs
    (with intervals) in ``metrics``; the network's own figures stay as ``val_auroc_network``.
    Returns (the fused thresholds, the head for the card)."""
    data, device, precision, codes = outcome.data, outcome.device, outcome.precision, outcome.data.labels

    def network_probabilities(X: np.ndarray) -> np.ndarray:
        return torch.sigmoid(predict_logits(outcome.model, to_tensor(X, device), device, precision)).numpy()

    P_val_net = network_probabilities(data.X_val)
    head, thresholds, fused = fit_fusion(
        data.F_train,
        data.Y_train,
        data.folds_train,
        data.F_val,
        data.Y_val,
        P_val_net,
        data.features,
        codes,
        config.threshold_method,
    )
    metrics["val_auroc_network"] = metrics.pop("val_auroc")
    metrics["val_macro_auroc_network"] = metrics.pop("val_macro_auroc")
    metrics.update(
        fused,
        val_macro_auroc=fused["val_auroc_ci"]["macro"]["value"],
        val_auroc={c: v["value"] for c, v in fused["val_auroc_ci"]["per_label"].items()},
    )
    if data.F_test is not None:  # a held-out fold: neither trained nor tuned on
        P_test_net = network_probabilities(data.X_test)
        metrics["test_auroc_ci"] = auroc_with_intervals(data.Y_test, head.combine(P_test_net, data.F_test), codes)
        metrics["test_auroc_network_ci"] = auroc_with_intervals(data.Y_test, P_test_net, codes)
    return thresholds, head.model_dump()


def intended_use(config: TrainConfig, data: TrainingData) -> str:
    """The card's intended use: the config's, else the demo's or real data's, with a warning when the
    labels are not the served ones."""
    if config.intended_use:
        return config.intended_use
    use = DEMO_ECG_INTENDED_USE if data.source == "synthetic" else REAL_DATA_INTENDED_USE
    if set(data.labels) != set(ECG_LABEL_CODES) and data.label_set != "superclass":
        use += (
            f" Labels are PTB-XL/SNOMED {data.label_set} classes, not the served ECG labels: the "
            "triage rules must weigh each of them before this model can be served."
        )
    return use


def ecg_card(
    config: TrainConfig,
    data: TrainingData,
    thresholds: dict[str, float],
    metrics: dict[str, Any],
    fusion: dict[str, Any] | None,
) -> ModelCard:
    """The model card of an ECG model trained per ``config`` on ``data``."""
    synthetic = data.source == "synthetic"
    return ModelCard(
        name=config.registry.name,
        task="ecg",
        architecture=config.model.architecture,
        architecture_params=config.model.build_kwargs(),
        labels=list(data.labels),
        label_names=list(data.label_names),
        thresholds=thresholds,
        input=InputSpec(
            shape=[None, 12, int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)],
            sampling_rate=float(TARGET_SAMPLING_RATE),
            window_s=float(WINDOW_SECONDS),
            preprocessing="datasets.ecg.transforms.ecg_preprocess",
            preprocessing_params=_pipeline_description(),
        ),
        training_data=data.for_card(),
        metrics=json_safe(metrics),
        # The shipped default learns from a few hundred public ECGs: real, but a demonstration of the
        # recipe, not a validated model, so the worklist labels it "(demo model)" too.
        demo=synthetic or data.source == "ptbxl+cinc",
        intended_use=intended_use(config, data),
        learned_from_real={code: False for code in data.labels}
        if synthetic
        else learned_labels(data.Y_train, data.labels),
        fusion=fusion,
    )


def finalize_ecg(config: TrainConfig, registry: ModelRegistry, outcome: FitOutcome) -> RegisteredModel:
    """Thresholds and metrics of the best weights (fused with the measurements for the default
    model), export + parity, card, registration."""
    data, device, precision = outcome.data, outcome.device, outcome.precision
    thresholds, metrics = evaluate_best(
        config,
        outcome,
        lambda m, X: predict_logits(m, X, device, precision),
        extra_tail={"data_counts": data.counts} if data.counts else {},
    )
    fusion = None
    if isinstance(data, DefaultEcgData):
        thresholds, fusion = fuse_with_measurements(config, outcome, metrics)
    model_cpu = outcome.model.to("cpu").eval()
    return export_and_register(
        config, registry, model_cpu, data.X_val, metrics, lambda m: ecg_card(config, data, thresholds, m, fusion)
    )


train_ecg = TaskTrainer("ecg", load_ecg_training_data, build_network, fit_hooks, finalize_ecg)

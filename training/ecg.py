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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.ecg.augment import ecg_augment
from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS, ecg_preprocess
from datasets.sources import load_cinc
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES, ECG_LABELS
from models.card import DEMO_ECG_INTENDED_USE, InputSpec, ModelCard
from models.card import TrainingData as CardTrainingData
from models.ecg.factory import build_ecg_model
from models.registry import ModelRegistry, RegisteredModel
from training import metrics as _metrics
from training.common import SINGLE_PROCESS, BatchAugment, Replica, prepare_model
from training.config import TrainConfig
from training.data import REAL_DATA_INTENDED_USE, TrainingData, from_source, learned_labels, open_training_source
from training.ecg_default import DefaultEcgData, load_default_data
from training.ecg_fusion import auroc_with_intervals, fit_fusion
from training.loop import FitOutcome, augmenting_inputs, evaluate_best, export_and_register, fit, setup_run
from training.loop import batches as _batches  # noqa: F401 - kept importable from here
from training.loop import config_hash as _config_hash  # noqa: F401
from training.loop import predict_logits as _predict_logits
from training.loop import split as _split
from training.loop import to_tensor as _to_tensor  # noqa: F401
from training.metrics import THRESHOLD_RANGE, macro  # noqa: F401 - re-exported
from training.metrics import json_safe as _json_safe

log = logging.getLogger(__name__)

TEST_SEED_OFFSET = 1_000_000  # synthetic held-out test set: seed + this, never the training stream
EVAL_BATCH_SIZE = 256


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

EcgTrainingData = TrainingData  # kept importable under its old name


def load_cinc_folder(
    folder: str | Path, limit: int | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PhysioNet/CinC 2021 WFDB records under ``folder`` → (X [n,12,5000], Y [n,L], record ids)
    with the served labels (``datasets.sources.cinc``). Unreadable records are skipped with a warning."""
    X, dataset = load_cinc(folder, limit=limit).load_inputs(progress=progress)
    if len(X) < 2:
        raise ValueError(f"only {len(X)} usable records under {folder}")
    return X, dataset.Y, dataset.ids


def load_ecg_training_data(config: TrainConfig, progress: bool = False) -> TrainingData:
    """Synthetic records (the demo) or a real layout (cinc, ptbxl, dicom, worklist) per ``config.data``."""
    data = config.data
    if data.source == "ptbxl+cinc":
        return load_default_data(config, progress=progress, held_out_fold=data.held_out_fold)
    if data.source != "synthetic":
        return from_source(open_training_source(config), config, progress=progress)
    # neurokit2 (the simulator) takes seconds to import: only the synthetic demo pays for it.
    from datasets.ecg.synthetic import GENERATOR_VERSION, make_synthetic_ecg_dataset  # noqa: PLC0415

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
    train_index, val_index = _split(len(X), data.val_fraction, data.seed)
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


def per_label_auroc(Y: np.ndarray, P: np.ndarray, codes=ECG_LABEL_CODES) -> dict[str, float | None]:
    """AUROC per label code; None where the data hold only one class for a label."""
    return _metrics.per_label_auroc(Y, P, codes)


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes=ECG_LABEL_CODES) -> dict[str, float]:
    """Per-label decision thresholds on validation data (``training.metrics.choose_thresholds``)."""
    return _metrics.choose_thresholds(Y, P, method, codes)


def operating_points(
    Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float], codes=ECG_LABEL_CODES
) -> dict[str, dict[str, float | None]]:
    """Sensitivity and specificity per label at the card's thresholds."""
    return _metrics.operating_points(Y, P, thresholds, codes)


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


def fit_ecg(
    config: TrainConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    replica: Replica = SINGLE_PROCESS,
    checkpoints: Any = None,
) -> FitOutcome:
    """Load the data and train (no export): the part every rank of a distributed run does."""
    started = time.perf_counter()
    generator, device, precision = setup_run(config, "ecg", replica)
    data = load_ecg_training_data(config, progress=progress and replica.is_main)
    codes = data.labels
    log.info(
        "ECG training on %s (AMP %s, rank %d/%d): %d train / %d val records, labels %s",
        device,
        precision.enabled,
        replica.rank,
        replica.world_size,
        len(data.X_train),
        len(data.X_val),
        ", ".join(codes),
    )

    model = prepare_model(build_ecg_model(config.model.architecture, len(codes), **config.model.build_kwargs()), device)
    batch_inputs = None
    if config.augment.enabled:
        a = config.augment
        augment = BatchAugment(
            ecg_augment(a.probability, a.amplitude_scale, a.baseline_wander_mv, a.noise_std_mv, a.max_shift_s)
        )
        batch_inputs = augmenting_inputs(augment, generator, device, replica)
    stats: dict[str, Any] = {}
    model, history, early = fit(
        config,
        model,
        data,
        codes=codes,
        device=device,
        precision=precision,
        generator=generator,
        progress=progress,
        resume=resume,
        on_epoch_end=on_epoch_end,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        batch_inputs=batch_inputs,
        replica=replica,
        checkpoints=checkpoints,
        stats=stats,
    )
    return FitOutcome(model, data, history, early, device, precision, time.perf_counter() - started, stats)


def train_ecg(
    config: TrainConfig,
    registry: ModelRegistry | None = None,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> RegisteredModel:
    """Train per ``config``, export, check ONNX parity, write the card and register the model.

    Args:
        registry: where to register (default: ``config.registry.root`` or the default registry).
        progress: tqdm bars for data generation and epochs.
        resume: continue from ``checkpoint_dir/last.pt`` if it belongs to this config (same
            model/data/optim/seed/augment settings); a finished run goes straight to export/registration.
        on_epoch_end: called with (epoch, metrics) after each epoch's checkpoint is written.

    Returns the registered version, with the config's alias set. (Several workers:
    ``training.distributed.train``.)
    """
    registry = registry or ModelRegistry(config.registry.root)
    outcome = fit_ecg(config, progress=progress, resume=resume, on_epoch_end=on_epoch_end)
    return finalize_ecg(config, registry, outcome)


def finalize_ecg(config: TrainConfig, registry: ModelRegistry, outcome: FitOutcome) -> RegisteredModel:
    """Thresholds and metrics of the best weights, export + parity, card, registration."""
    data, device, precision = outcome.data, outcome.device, outcome.precision
    codes = data.labels
    thresholds, metrics = evaluate_best(
        config,
        outcome.model,
        data,
        codes=codes,
        device=device,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        history=outcome.history,
        early=outcome.early,
        train_seconds=outcome.train_seconds,
        extra_tail={**({"data_counts": data.counts} if data.counts else {}), **outcome.card_metrics},
    )
    fusion = None
    if isinstance(data, DefaultEcgData):  # the network's fold-9 figures stay as val_auroc_network
        P_val_net = torch.sigmoid(
            predict_logits(outcome.model, _to_tensor(data.X_val, device), device, precision)
        ).numpy()
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
        metrics["val_auroc_network"], metrics["val_macro_auroc_network"] = (
            metrics.pop("val_auroc"),
            metrics.pop("val_macro_auroc"),
        )
        metrics.update(
            fused,
            val_macro_auroc=fused["val_auroc_ci"]["macro"]["value"],
            val_auroc={c: v["value"] for c, v in fused["val_auroc_ci"]["per_label"].items()},
        )
        if data.F_test is not None:  # a held-out fold: neither trained nor tuned on
            P_test_net = torch.sigmoid(
                predict_logits(outcome.model, _to_tensor(data.X_test, device), device, precision)
            ).numpy()
            metrics["test_auroc_ci"] = auroc_with_intervals(data.Y_test, head.combine(P_test_net, data.F_test), codes)
            metrics["test_auroc_network_ci"] = auroc_with_intervals(data.Y_test, P_test_net, codes)
        fusion = head.model_dump()
    synthetic = data.source == "synthetic"
    # The shipped default learns from a few hundred public ECGs: real, but a demonstration of the
    # recipe, not a validated model, so the worklist labels it "(demo model)" too.
    demo = synthetic or data.source == "ptbxl+cinc"
    intended_use = config.intended_use or (DEMO_ECG_INTENDED_USE if synthetic else REAL_DATA_INTENDED_USE)
    if set(codes) != set(ECG_LABEL_CODES) and data.label_set != "superclass" and not config.intended_use:
        intended_use += (
            f" Labels are PTB-XL/SNOMED {data.label_set} classes, not the served ECG labels: the "
            "triage rules must weigh each of them before this model can be served."
        )

    def make_card(metrics: dict[str, Any]) -> ModelCard:
        return ModelCard(
            name=config.registry.name,
            task="ecg",
            architecture=config.model.architecture,
            architecture_params=config.model.build_kwargs(),
            labels=list(codes),
            label_names=list(data.label_names),
            thresholds=thresholds,
            input=InputSpec(
                shape=[None, 12, int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)],
                sampling_rate=float(TARGET_SAMPLING_RATE),
                window_s=float(WINDOW_SECONDS),
                preprocessing="datasets.ecg.transforms.ecg_preprocess",
                preprocessing_params=_pipeline_description(),
            ),
            training_data=CardTrainingData(
                description=data.description,
                source=data.source,
                n_train=len(data.X_train),
                n_val=len(data.X_val),
                n_test=len(data.X_test) if data.X_test is not None else None,
                fingerprint_sha256=data.fingerprint(),
            ),
            metrics=_json_safe(metrics),
            demo=demo,
            intended_use=intended_use,
            learned_from_real={code: False for code in data.labels}
            if synthetic
            else learned_labels(data.Y_train, data.labels),
            fusion=fusion,
        )

    return export_and_register(config, registry, outcome.model.to("cpu").eval(), data.X_val, metrics, make_card)

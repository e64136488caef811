"""Train, export, check and register a 12-lead ECG classifier.

``train_ecg(load_train_config("configs/train/ecg-demo.yaml"))`` is the whole demo: synthetic
ECGs → XResNet1d → ONNX + TorchScript (parity-checked) → model card → registry (``ecg@champion``).

Every input goes through ``datasets.ecg.transforms.preprocess_signals`` — the same function
serving calls — so the network never sees a different pipeline in production.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS, ecg_preprocess, preprocess_signals
from models.card import DEMO_ECG_INTENDED_USE, InputSpec, ModelCard, TrainingData, fingerprint_arrays
from models.ecg.factory import build_ecg_model
from models.ecg.labels import ECG_LABEL_CODES, ECG_LABELS, labels_from_snomed
from models.registry import ModelRegistry, RegisteredModel
from training import metrics as _metrics
from training.common import EarlyStopping, prepare_model, seed_everything, select_device, select_precision
from training.config import TrainConfig
from training.loop import batches as _batches  # noqa: F401 - kept importable from here
from training.loop import config_hash as _config_hash  # noqa: F401
from training.loop import evaluate_best, export_and_register, fit
from training.loop import predict_logits as _predict_logits
from training.loop import split as _split
from training.loop import to_tensor as _to_tensor  # noqa: F401
from training.metrics import THRESHOLD_RANGE, macro  # noqa: F401 - re-exported
from training.metrics import json_safe as _json_safe

log = logging.getLogger(__name__)

TEST_SEED_OFFSET = 1_000_000  # synthetic held-out test set: seed + this, never the training stream
EVAL_BATCH_SIZE = 256
REAL_DATA_INTENDED_USE = ("Preliminary read to prioritise a reading worklist; every read is reviewed and signed "
                          "by a physician. Not a diagnosis.")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

@dataclass
class EcgTrainingData:
    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    description: str
    source: str

    def fingerprint(self) -> str:
        return fingerprint_arrays(self.X_train, self.Y_train)


def load_cinc_folder(folder: str | Path, limit: int | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PhysioNet/CinC 2021 WFDB records under ``folder`` → (X [n,12,5000], Y [n,L], record ids).
    Records that cannot be read or lack one of the 12 leads are skipped with a warning."""
    from datasets.ecg.readers import read_wfdb

    headers = sorted(Path(folder).rglob("*.hea"))
    if limit is not None:
        headers = headers[:limit]
    if not headers:
        raise FileNotFoundError(f"no WFDB headers (*.hea) under {folder}")
    X, Y, ids = [], [], []
    for header in tqdm(headers, desc="CinC records", disable=not progress, unit="rec"):
        try:
            record = read_wfdb(header).in_standard_order()
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop a training run
            warnings.warn(f"skipping {header.name}: {exc}")
            continue
        X.append(preprocess_signals(record.signals, record.sampling_rate))
        codes = labels_from_snomed(record.labels)
        Y.append(np.array([code in codes for code in ECG_LABEL_CODES], dtype=np.float32))
        ids.append(header.stem)
    if len(X) < 2:
        raise ValueError(f"only {len(X)} usable records under {folder}")
    return np.stack(X).astype(np.float32), np.stack(Y), ids


def load_ecg_training_data(config: TrainConfig, progress: bool = False) -> EcgTrainingData:
    data = config.data
    X_test = Y_test = None
    if data.source == "synthetic":
        from datasets.ecg.synthetic import GENERATOR_VERSION, make_synthetic_ecg_dataset

        X, Y = make_synthetic_ecg_dataset(data.n, data.seed, cache_dir=data.path, progress=progress)
        if data.test_n:
            X_test, Y_test = make_synthetic_ecg_dataset(data.test_n, data.seed + TEST_SEED_OFFSET,
                                                        cache_dir=data.path, progress=progress)
        description = (f"Synthetic 12-lead ECGs simulated from neurokit2 beat templates (preread generator "
                       f"v{GENERATOR_VERSION}), {data.n} records, seed {data.seed}")
    else:
        X, Y, _ = load_cinc_folder(data.path, limit=data.n, progress=progress)
        description = f"PhysioNet/CinC 2021 WFDB records from {data.path} ({len(X)} records)"
    train_index, val_index = _split(len(X), data.val_fraction, data.seed)
    return EcgTrainingData(X[train_index], Y[train_index], X[val_index], Y[val_index], X_test, Y_test,
                           description=description, source=data.source)


# --------------------------------------------------------------------------------------------
# Metrics and thresholds
# --------------------------------------------------------------------------------------------

def per_label_auroc(Y: np.ndarray, P: np.ndarray, codes=ECG_LABEL_CODES) -> dict[str, float | None]:
    """AUROC per label code; None where the data hold only one class for a label."""
    return _metrics.per_label_auroc(Y, P, codes)


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes=ECG_LABEL_CODES) -> dict[str, float]:
    """Per-label decision thresholds on validation data (``training.metrics.choose_thresholds``)."""
    return _metrics.choose_thresholds(Y, P, method, codes)


def operating_points(Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float],
                     codes=ECG_LABEL_CODES) -> dict[str, dict[str, float | None]]:
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


def train_ecg(config: TrainConfig, registry: ModelRegistry | None = None, progress: bool = True,
              resume: bool = False, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> RegisteredModel:
    """Train per ``config``, export, check ONNX parity, write the card and register the model.

    Args:
        registry: where to register (default: ``config.registry.root`` or the default registry).
        progress: tqdm bars for data generation and epochs.
        resume: continue from ``checkpoint_dir/last.pt`` if it belongs to this config (same
            model/data/optim/seed settings); a finished run goes straight to export/registration.
        on_epoch_end: called with (epoch, metrics) after each epoch's checkpoint is written.

    Returns the registered version, with the config's alias set.
    """
    if config.task != "ecg":
        raise ValueError(f"train_ecg got a {config.task!r} config")
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    registry = registry or ModelRegistry(config.registry.root)
    generator = seed_everything(config.seed)
    device = select_device(config.device)
    precision = select_precision(device)
    data = load_ecg_training_data(config, progress=progress)
    n_labels = len(ECG_LABEL_CODES)
    log.info("ECG training on %s (AMP %s): %d train / %d val records", device, precision.enabled,
             len(data.X_train), len(data.X_val))

    model = prepare_model(build_ecg_model(config.model.architecture, n_labels, **config.model.build_kwargs()), device)
    model, history, early = fit(
        config, model, data, codes=ECG_LABEL_CODES, device=device, precision=precision, generator=generator,
        progress=progress, resume=resume, on_epoch_end=on_epoch_end,
        predict=lambda m, X: predict_logits(m, X, device, precision))
    train_seconds = time.perf_counter() - started
    return _finalize(config, registry, model, data, device, precision, history, early, train_seconds)


def _finalize(config: TrainConfig, registry: ModelRegistry, model: nn.Module, data: EcgTrainingData,
              device: torch.device, precision, history: list[dict], early: EarlyStopping,
              train_seconds: float) -> RegisteredModel:
    """Thresholds and metrics of the best weights, export + parity, card, registration."""
    thresholds, metrics = evaluate_best(
        config, model, data, codes=ECG_LABEL_CODES, device=device,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        history=history, early=early, train_seconds=train_seconds)
    demo = data.source == "synthetic"

    def make_card(metrics: dict[str, Any]) -> ModelCard:
        return ModelCard(
            name=config.registry.name,
            task="ecg",
            architecture=config.model.architecture,
            architecture_params=config.model.build_kwargs(),
            labels=list(ECG_LABEL_CODES),
            label_names=[label.name for label in ECG_LABELS],
            thresholds=thresholds,
            input=InputSpec(shape=[None, 12, int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)],
                            sampling_rate=float(TARGET_SAMPLING_RATE), window_s=float(WINDOW_SECONDS),
                            preprocessing="datasets.ecg.transforms.ecg_preprocess",
                            preprocessing_params=_pipeline_description()),
            training_data=TrainingData(description=data.description, source=data.source,
                                       n_train=len(data.X_train), n_val=len(data.X_val),
                                       n_test=len(data.X_test) if data.X_test is not None else None,
                                       fingerprint_sha256=data.fingerprint()),
            metrics=_json_safe(metrics),
            demo=demo,
            intended_use=config.intended_use or (DEMO_ECG_INTENDED_USE if demo else REAL_DATA_INTENDED_USE),
        )

    return export_and_register(config, registry, model.to("cpu").eval(), data.X_val, metrics, make_card)

"""Train, export, check and register a 12-lead ECG classifier.

``train_ecg(load_train_config("configs/train/ecg-demo.yaml"))`` is the whole demo: synthetic
ECGs → XResNet1d → ONNX + TorchScript (parity-checked) → model card → registry (``ecg@champion``).

Every input goes through ``datasets.ecg.transforms.preprocess_signals`` — the same function
serving calls — so the network never sees a different pipeline in production.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
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
from models.export import export_onnx, export_torchscript, require_parity
from models.registry import ModelRegistry, RegisteredModel
from training.common import (
    CHECKPOINT_FILENAME,
    EarlyStopping,
    load_checkpoint,
    prepare_model,
    save_checkpoint,
    seed_everything,
    select_device,
    select_precision,
    state_dict_cpu,
)
from training.config import TrainConfig

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


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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

def per_label_auroc(Y: np.ndarray, P: np.ndarray) -> dict[str, float | None]:
    """AUROC per label code; None where the data hold only one class for a label."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float | None] = {}
    for index, code in enumerate(ECG_LABEL_CODES):
        y = Y[:, index]
        out[code] = float(roc_auc_score(y, P[:, index])) if 0 < y.sum() < len(y) else None
    return out


def macro(values: dict[str, float | None]) -> float:
    present = [v for v in values.values() if v is not None]
    return float(np.mean(present)) if present else float("nan")


THRESHOLD_RANGE = (0.05, 0.95)


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str) -> dict[str, float]:
    """Per-label decision thresholds on validation data: Youden's J (max sensitivity +
    specificity − 1) or max F1; 0.5 for 'fixed' and for labels with a single class.

    The threshold is the midpoint between the lowest score called positive at the optimum and the
    next lower score — not the score itself, which would sit on the edge of the optimal interval
    (with well-separated classes, just under the weakest positive). Ties go to the cut closest to
    0.5, and cuts are clipped to THRESHOLD_RANGE: on a few hundred validation records one sample
    can otherwise push a label to fire on almost everything (or nothing) once data shift.
    """
    thresholds: dict[str, float] = {}
    for index, code in enumerate(ECG_LABEL_CODES):
        y, p = Y[:, index] > 0.5, P[:, index].astype(np.float64)
        positives = int(y.sum())
        if method == "fixed" or not 0 < positives < len(y):
            thresholds[code] = 0.5
            continue
        order = np.argsort(-p, kind="stable")
        scores, truth = p[order], y[order]
        # Calling "positive" every score >= scores[i], for i at the end of each run of equal scores.
        ends = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
        tp = np.cumsum(truth)[ends].astype(np.float64)
        fp = np.cumsum(~truth)[ends].astype(np.float64)
        if method == "youden":
            objective = tp / positives - fp / (len(y) - positives)
        else:
            objective = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1e-12)
        next_lower = np.r_[scores[ends[:-1] + 1], 0.0]
        cuts = (scores[ends] + next_lower) / 2
        tied = np.flatnonzero(objective >= objective.max() - 1e-12)
        best = tied[np.argmin(np.abs(cuts[tied] - 0.5))]
        thresholds[code] = float(np.clip(cuts[best], *THRESHOLD_RANGE))
    return thresholds


def operating_points(Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Sensitivity and specificity per label at the card's thresholds."""
    out = {}
    for index, code in enumerate(ECG_LABEL_CODES):
        y, predicted = Y[:, index] > 0.5, P[:, index] >= thresholds[code]
        positives, negatives = y.sum(), (~y).sum()
        out[code] = {
            "sensitivity": float((predicted & y).sum() / positives) if positives else None,
            "specificity": float((~predicted & ~y).sum() / negatives) if negatives else None,
        }
    return out


# --------------------------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------------------------

def _batches(n: int, batch_size: int, order: torch.Tensor) -> list[torch.Tensor]:
    """Batches of indices; a trailing batch of one sample is dropped (BatchNorm needs two)."""
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return len(_batches(n, batch_size, torch.arange(n)))


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(X), EVAL_BATCH_SIZE):
            batch = X[start:start + EVAL_BATCH_SIZE].to(device, non_blocking=True)
            with precision.autocast(device):
                outputs.append(model(batch).float().cpu())
    return torch.cat(outputs)


def _config_hash(config: TrainConfig) -> str:
    """What determines the weights: a checkpoint only resumes the run it came from."""
    relevant = config.model_dump(mode="json", include={"task", "model", "data", "optim", "seed", "early_stopping"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _pipeline_description() -> dict[str, Any]:
    steps = []
    for transform in ecg_preprocess("center").transforms:
        params = {k: v for k, v in vars(transform).items() if not k.startswith("_") and k != "rng"}
        steps.append({"name": type(transform).__name__, **params})
    return {"window_mode": "center", "steps": steps}


def _to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    # Small enough datasets live on the GPU for the whole run: no per-batch host→device copies.
    if device.type == "cuda" and tensor.numel() * tensor.element_size() < 4 * 2**30:
        tensor = tensor.to(device)
    return tensor


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
    X_train, Y_train = _to_tensor(data.X_train, device), _to_tensor(data.Y_train, device)
    X_val = _to_tensor(data.X_val, device)

    # Class weighting: positives of rare labels count neg/pos times (capped, so a label with a
    # handful of positives does not dominate the loss).
    positives = data.Y_train.sum(axis=0)
    pos_weight = torch.tensor(np.clip((len(data.Y_train) - positives) / np.maximum(positives, 1.0), 1.0, 50.0),
                              dtype=torch.float32, device=device)
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    optim = config.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    steps = _steps_per_epoch(len(data.X_train), optim.batch_size)
    total_steps = steps * optim.epochs
    if optim.scheduler == "onecycle" and total_steps >= 4:
        # The warm-up must span at least two steps: OneCycleLR divides by its phase lengths
        # (runs of fewer than four steps, as in smoke tests, fall back to cosine annealing).
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.lr, total_steps=total_steps,
                                                        pct_start=max(0.25, 2.0 / total_steps))
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    scaler = precision.make_scaler()
    early = EarlyStopping(config.early_stopping.patience, config.early_stopping.mode, config.early_stopping.min_delta)

    checkpoint_path = Path(config.checkpoint_dir) / CHECKPOINT_FILENAME
    config_hash = _config_hash(config)
    start_epoch, history, best_state, finished = 0, [], None, False
    if resume and checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                  scaler=scaler, early_stopping=early, generator=generator, device=device)
        if payload.get("config_hash") != config_hash:
            raise ValueError(f"checkpoint {checkpoint_path} belongs to a different training config; "
                             "remove it or train with resume=False")
        start_epoch, history = payload["epoch"] + 1, payload["history"]
        best_state, finished = payload["best_state"], payload["finished"]
        log.info("resuming from %s after epoch %d", checkpoint_path, payload["epoch"] + 1)

    for epoch in range(start_epoch, optim.epochs):
        if finished:
            break
        model.train()
        order = torch.randperm(len(data.X_train), generator=generator)
        running, seen = 0.0, 0
        batches = _batches(len(data.X_train), optim.batch_size, order)
        with tqdm(batches, desc=f"epoch {epoch + 1}/{optim.epochs}", disable=not progress, leave=False,
                  unit="batch") as bar:
            for index in bar:
                index = index.to(X_train.device)
                xb, yb = X_train[index].to(device, non_blocking=True), Y_train[index].to(device, non_blocking=True)
                with precision.autocast(device):
                    logits = model(xb)
                loss = criterion(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if optim.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                running += float(loss.detach()) * len(index)
                seen += len(index)
                bar.set_postfix(loss=f"{running / seen:.4f}")

        val_logits = predict_logits(model, X_val, device, precision)
        val_loss = float(nn.functional.binary_cross_entropy_with_logits(
            val_logits, torch.from_numpy(data.Y_val), pos_weight=pos_weight.cpu()))
        val_auroc = per_label_auroc(data.Y_val, torch.sigmoid(val_logits).numpy())
        metrics = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "val_loss": val_loss,
                   "val_macro_auroc": macro(val_auroc), "val_auroc": val_auroc,
                   "lr": optimizer.param_groups[0]["lr"]}
        history.append(metrics)
        if early.step(metrics[config.early_stopping.metric], epoch):
            best_state = state_dict_cpu(model)
        finished = early.should_stop or epoch == optim.epochs - 1
        save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                        epoch=epoch, early_stopping=early, generator=generator, history=history,
                        best_state=best_state, finished=finished, config_hash=config_hash)
        summary = (f"epoch {epoch + 1}/{optim.epochs}: train loss {metrics['train_loss']:.4f}, val loss "
                   f"{val_loss:.4f}, val macro AUROC {metrics['val_macro_auroc']:.4f}")
        if progress:
            tqdm.write(summary)
        log.info(summary)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if early.should_stop:
            log.info("early stopping: no %s improvement for %d epochs", config.early_stopping.metric, early.patience)
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    train_seconds = time.perf_counter() - started
    return _finalize(config, registry, model, data, device, precision, history, early, train_seconds)


def _finalize(config: TrainConfig, registry: ModelRegistry, model: nn.Module, data: EcgTrainingData,
              device: torch.device, precision, history: list[dict], early: EarlyStopping,
              train_seconds: float) -> RegisteredModel:
    """Thresholds and metrics of the best weights, export + parity, card, registration."""
    val_probs = torch.sigmoid(predict_logits(model, _to_tensor(data.X_val, device), device, precision)).numpy()
    thresholds = choose_thresholds(data.Y_val, val_probs, config.threshold_method)
    val_auroc = per_label_auroc(data.Y_val, val_probs)
    metrics: dict[str, Any] = {
        "val_macro_auroc": macro(val_auroc), "val_auroc": val_auroc,
        "val_operating_points": operating_points(data.Y_val, val_probs, thresholds),
        "best_epoch": (early.best_epoch + 1) if early.best_epoch is not None else None,
        "epochs_run": len(history), "early_stopping_metric": config.early_stopping.metric,
        "history": history, "train_seconds": round(train_seconds, 1), "device": str(device),
        "threshold_method": config.threshold_method,
    }
    if data.X_test is not None:
        test_probs = torch.sigmoid(predict_logits(model, _to_tensor(data.X_test, device), device, precision)).numpy()
        test_auroc = per_label_auroc(data.Y_test, test_probs)
        metrics.update({"test_macro_auroc": macro(test_auroc), "test_auroc": test_auroc,
                        "test_operating_points": operating_points(data.Y_test, test_probs, thresholds)})

    checkpoint_dir = Path(config.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="export-", dir=checkpoint_dir))
    try:
        model_cpu = model.to("cpu").eval()
        torch.save(state_dict_cpu(model_cpu), staging / "state_dict.pt")
        parity_inputs = torch.from_numpy(np.ascontiguousarray(data.X_val[: config.export.parity_samples]))
        example = parity_inputs[:1]
        if config.export.onnx:
            export_onnx(model_cpu, staging / "model.onnx", example)
            metrics["onnx_parity_max_abs_diff"] = require_parity(
                model_cpu, staging / "model.onnx", parity_inputs, tolerance=config.export.parity_tolerance)
        if config.export.torchscript:
            export_torchscript(model_cpu, staging / "model.pt", example)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.load(str(staging / "model.pt"))
            with torch.no_grad():
                diff = float((torch.sigmoid(scripted(parity_inputs)) - torch.sigmoid(model_cpu(parity_inputs))).abs().max())
            if diff > config.export.parity_tolerance:
                raise RuntimeError(f"TorchScript export differs from the trained model by {diff:.3g}")
            metrics["torchscript_parity_max_abs_diff"] = diff

        demo = data.source == "synthetic"
        card = ModelCard(
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
        registered = registry.register(config.registry.name, staging, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if config.registry.alias:
        registry.set_alias(registered.name, config.registry.alias, registered.version)
    registered = registry.resolve(registered.ref)
    log.info("registered %s (val macro AUROC %.4f)", registered.ref, metrics["val_macro_auroc"])
    return registered


def _json_safe(value: Any) -> Any:
    """NaN → None and NumPy scalars → Python, so the card is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if np.isnan(value) or np.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value

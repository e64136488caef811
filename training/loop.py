"""The epoch loop, evaluation of the best weights and export + registration, shared by the
ECG and CXR trainers. Task specifics (batch inputs, extra metrics, the card) come in as hooks.

The same loop runs alone or as one rank of a data-parallel run (``training.common.Replica``,
driven by ``training.distributed``): the model is wrapped in DistributedDataParallel, each rank
trains on its shard of every epoch's permutation, validation predictions are gathered, and only
the checkpoint store decides where checkpoints go (a local file, or Ray Train's reports).

Targets may hold NaN (unknown labels): the loss masks those cells out, class weights count known
cells only, and the metrics skip them."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.card import ModelCard
from models.export import export_onnx, export_torchscript, require_parity
from models.registry import ModelRegistry, RegisteredModel
from training.common import (
    CHECKPOINT_FILENAME,
    SINGLE_PROCESS,
    BatchAugment,
    EarlyStopping,
    Precision,
    Replica,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
    select_precision,
    state_dict_cpu,
)
from training.config import TrainConfig
from training.metrics import choose_thresholds, macro, operating_points, per_label_auroc

log = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    """What training leaves for export: the best weights (unwrapped), the data, the history."""

    model: nn.Module
    data: Any
    history: list[dict]
    early: EarlyStopping
    device: torch.device
    precision: Precision
    train_seconds: float
    stats: dict[str, Any] = field(default_factory=dict)  # what this rank trained on (training.distributed)
    card_metrics: dict[str, Any] = field(default_factory=dict)  # extra figures for the card (e.g. distributed)


def setup_run(
    config: TrainConfig, task: str, replica: Replica = SINGLE_PROCESS
) -> tuple[torch.Generator, torch.device, Precision]:
    """Check the config is for ``task``; threads, seeds (→ the loop's generator), device (the
    replica's under Ray) and precision."""
    if config.task != task:
        raise ValueError(f"train_{task} got a {config.task!r} config")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    generator = seed_everything(config.seed)
    device = replica.device or select_device(config.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return generator, device, select_precision(device)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def batches(n: int, batch_size: int, order: torch.Tensor) -> list[torch.Tensor]:
    """Batches of indices; a trailing batch of one sample is dropped (BatchNorm needs two)."""
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:
        out.pop()
    return out


def steps_per_epoch(n: int, batch_size: int) -> int:
    return len(batches(n, batch_size, torch.arange(n)))


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if channels_last and batch.ndim == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    # Small enough datasets live on the GPU for the whole run: no per-batch host→device copies.
    if device.type == "cuda" and tensor.numel() * tensor.element_size() < 4 * 2**30:
        tensor = tensor.to(device)
    return tensor


def predict_logits(
    model: nn.Module,
    X: torch.Tensor,
    device: torch.device,
    precision: Precision,
    *,
    batch_size: int,
    channels_last: bool = False,
    n_labels: int | None = None,
) -> torch.Tensor:
    """Logits in batches of ``batch_size``; with ``n_labels``, an empty X gives an empty [0, n_labels]."""
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            batch = to_device(X[start : start + batch_size], device, channels_last)
            with precision.autocast(device):
                outputs.append(model(batch).float().cpu())
    if not outputs and n_labels is not None:
        return torch.zeros((0, n_labels))
    return torch.cat(outputs)


def config_hash(config: TrainConfig) -> str:
    """What determines the weights: a checkpoint only resumes the run it came from."""
    relevant = config.model_dump(
        mode="json", include={"task", "model", "data", "optim", "seed", "early_stopping", "augment"}
    )
    relevant["world_size"] = config.distributed.num_workers
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def class_pos_weight(Y_train: np.ndarray, device: torch.device) -> torch.Tensor:
    """Positives of rare labels count neg/pos times (capped at 50, so a label with a handful of
    positives does not dominate the loss); unknown (NaN) cells count as neither."""
    positives = np.nansum(Y_train, axis=0)
    negatives = (Y_train == 0).sum(axis=0)
    return torch.tensor(np.clip(negatives / np.maximum(positives, 1.0), 1.0, 50.0), dtype=torch.float32, device=device)


class MaskedBCE:
    """Class-weighted BCE on logits that ignores unknown (NaN) targets. Without NaN in the
    training targets it is exactly ``BCEWithLogitsLoss(pos_weight)``."""

    def __init__(self, pos_weight: torch.Tensor, masked: bool):
        self.pos_weight, self.masked = pos_weight, masked

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos_weight = self.pos_weight.to(logits.device)
        if not self.masked:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
        known = ~torch.isnan(targets)
        per_cell = nn.functional.binary_cross_entropy_with_logits(
            logits, torch.nan_to_num(targets), pos_weight=pos_weight, reduction="none"
        )
        return (per_cell * known).sum() / known.sum().clamp(min=1)


def make_scheduler(optimizer: torch.optim.Optimizer, optim, total_steps: int):
    if optim.scheduler == "onecycle" and total_steps >= 4:
        # The warm-up must span at least two steps: OneCycleLR divides by its phase lengths
        # (runs of fewer than four steps, as in smoke tests, fall back to cosine annealing).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optim.lr, total_steps=total_steps, pct_start=max(0.25, 2.0 / total_steps)
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


BatchInputs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (X_train, index) -> model input
Predict = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, X) -> logits on CPU


def augmenting_inputs(
    augment: BatchAugment,
    generator: torch.Generator,
    device: torch.device,
    replica: Replica = SINGLE_PROCESS,
    channels_last: bool = False,
) -> BatchInputs:
    """Batch inputs through ``augment``, each batch seeded from the run's generator (its state is in
    the checkpoint: exact resume). Every rank draws the same seed, so the generators stay in step;
    the rank is folded in so ranks augment differently."""

    def batch_inputs(X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        seed = (seed + 1_000_003 * replica.rank) % (2**31 - 1)
        return to_device(augment(X[index], seed), device, channels_last)

    return batch_inputs


class LocalCheckpoints:
    """``checkpoint_dir/last.pt``, rewritten after every epoch; resumed from when asked to."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.resume = Path(path), resume

    def latest(self) -> Path | None:
        return self.path if self.resume and self.path.is_file() else None

    def save(self, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        write(self.path)


def fit(
    config: TrainConfig,
    model: nn.Module,
    data: Any,
    *,
    codes: Sequence[str],
    device: torch.device,
    precision: Precision,
    generator: torch.Generator,
    progress: bool,
    resume: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    predict: Predict,
    batch_inputs: BatchInputs | None = None,
    extra_val_metrics: Callable[[np.ndarray], dict[str, Any]] | None = None,
    summary_suffix: Callable[[dict[str, Any]], str] | None = None,
    after_resume: Callable[[nn.Module], nn.Module] | None = None,
    replica: Replica = SINGLE_PROCESS,
    checkpoints: Any = None,
    stats: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[dict], EarlyStopping]:
    """Train ``model`` on ``data`` (X_train/Y_train/X_val/Y_val arrays) per ``config`` with
    per-epoch checkpoints (exact resume) and early stopping; loads the best weights at the end.
    Returns (model — unwrapped from DDP —, history, early stopping state).

    ``checkpoints``: where checkpoints go and come from (default ``LocalCheckpoints`` on
    ``checkpoint_dir/last.pt``, resumed from if ``resume``); ``on_epoch_end`` runs on rank 0 only;
    ``stats`` (if given) receives this rank's sample count and its first epoch's training indices."""
    X_train, Y_train = to_tensor(data.X_train, device), to_tensor(data.Y_train, device)
    X_val = to_tensor(data.X_val, device)
    if batch_inputs is None:

        def batch_inputs(X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return X[index].to(device, non_blocking=True)

    no_positive = [code for j, code in enumerate(codes) if not (data.Y_train[:, j] == 1).any()]
    if no_positive and replica.is_main:
        log.warning(
            "no training case is positive for %s: the model cannot learn these labels from these data",
            ", ".join(no_positive),
        )
    pos_weight = class_pos_weight(data.Y_train, device)
    criterion = MaskedBCE(pos_weight, masked=bool(np.isnan(data.Y_train).any()))
    val_criterion = MaskedBCE(pos_weight.cpu(), masked=bool(np.isnan(data.Y_val).any()))

    optim = config.optim
    batch_size = replica.batch_size(optim.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = make_scheduler(
        optimizer, optim, steps_per_epoch(replica.shard_length(len(data.X_train)), batch_size) * optim.epochs
    )
    scaler = precision.make_scaler()
    early = EarlyStopping(config.early_stopping.patience, config.early_stopping.mode, config.early_stopping.min_delta)

    checkpoints = checkpoints or LocalCheckpoints(Path(config.checkpoint_dir) / CHECKPOINT_FILENAME, resume)
    run_hash = config_hash(config)
    start_epoch, history, best_state, finished = 0, [], None, False
    start_from = checkpoints.latest()
    if start_from is not None:
        payload = load_checkpoint(
            start_from,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            early_stopping=early,
            generator=generator,
            device=device,
        )
        if payload.get("config_hash") != run_hash:
            raise ValueError(
                f"checkpoint {start_from} belongs to a different training config; remove it or train with resume=False"
            )
        if after_resume is not None:
            model = after_resume(model)
        start_epoch, history = payload["epoch"] + 1, payload["history"]
        best_state, finished = payload["best_state"], payload["finished"]
        log.info("resuming from %s after epoch %d", start_from, payload["epoch"] + 1)

    base = model
    if replica.distributed:
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        on_gpu = device.type == "cuda"
        model = DistributedDataParallel(
            base, device_ids=[device.index] if on_gpu else None, output_device=device.index if on_gpu else None
        )

    def validation_logits() -> torch.Tensor:
        if not replica.distributed:
            return predict(base, X_val)
        # The unwrapped module: DDP's forward would wait for the other ranks' (buffer sync).
        replica.sync_buffers(base)
        return replica.gather_rows(
            lambda index: predict(base, X_val[index.to(X_val.device)]), len(data.X_val), len(codes)
        )

    for epoch in range(start_epoch, optim.epochs):
        if finished:
            break
        model.train()
        order = replica.shard(torch.randperm(len(data.X_train), generator=generator))
        if stats is not None:
            stats.setdefault("first_epoch_indices", order.tolist())
        running, seen = 0.0, 0
        with tqdm(
            batches(len(order), batch_size, order),
            desc=f"epoch {epoch + 1}/{optim.epochs}",
            disable=not progress or not replica.is_main,
            leave=False,
            unit="batch",
        ) as bar:
            for index in bar:
                index = index.to(X_train.device)
                xb = batch_inputs(X_train, index)
                yb = Y_train[index].to(device, non_blocking=True)
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
        if stats is not None:
            stats["samples"] = stats.get("samples", 0) + seen
            stats["epochs"] = stats.get("epochs", 0) + 1

        val_logits = validation_logits()
        val_loss = float(val_criterion(val_logits, torch.from_numpy(data.Y_val)))
        val_probs = torch.sigmoid(val_logits).numpy()
        val_auroc = per_label_auroc(data.Y_val, val_probs, codes)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": running / max(seen, 1),
            "val_loss": val_loss,
            "val_macro_auroc": macro(val_auroc),
            "val_auroc": val_auroc,
            **(extra_val_metrics(val_probs) if extra_val_metrics is not None else {}),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(metrics)
        if early.step(metrics[config.early_stopping.metric], epoch):
            best_state = state_dict_cpu(base)
        finished = early.should_stop or epoch == optim.epochs - 1
        checkpoints.save(
            lambda path: save_checkpoint(
                path,
                model=base,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                epoch=epoch,  # noqa: B023
                early_stopping=early,
                generator=generator,
                history=history,
                best_state=best_state,  # noqa: B023
                finished=finished,  # noqa: B023
                config_hash=run_hash,
            ),
            metrics,
        )
        summary = (
            f"epoch {epoch + 1}/{optim.epochs}: train loss {metrics['train_loss']:.4f}, val loss "
            f"{val_loss:.4f}, val macro AUROC {metrics['val_macro_auroc']:.4f}"
        )
        if summary_suffix is not None:
            summary += summary_suffix(metrics)
        if progress and replica.is_main:
            tqdm.write(summary)
        log.info(summary)
        if on_epoch_end is not None and replica.is_main:
            on_epoch_end(epoch, metrics)
        if early.should_stop:
            log.info("early stopping: no %s improvement for %d epochs", config.early_stopping.metric, early.patience)
            break

    if best_state is not None:
        base.load_state_dict(best_state)
    return base, history, early


def evaluate_best(
    config: TrainConfig,
    model: nn.Module,
    data: Any,
    *,
    codes: Sequence[str],
    device: torch.device,
    predict: Predict,
    history: list[dict],
    early: EarlyStopping,
    train_seconds: float,
    extra_val: dict[str, Any] | None = None,
    extra_tail: dict[str, Any] | None = None,
    test_prefix: str = "test_",
    val_probs_hook: Callable[[np.ndarray], dict[str, Any]] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Thresholds (validation) and the card's metrics for the best weights → (thresholds, metrics).
    ``val_probs_hook(val_probs)`` adds metrics right after ``val_auroc``; ``extra_tail`` at the end."""
    val_probs = torch.sigmoid(predict(model, to_tensor(data.X_val, device))).numpy()
    thresholds = choose_thresholds(data.Y_val, val_probs, config.threshold_method, codes)
    val_auroc = per_label_auroc(data.Y_val, val_probs, codes)
    metrics: dict[str, Any] = {
        "val_macro_auroc": macro(val_auroc),
        "val_auroc": val_auroc,
        **(val_probs_hook(val_probs) if val_probs_hook is not None else {}),
        "val_operating_points": operating_points(data.Y_val, val_probs, thresholds, codes),
        "best_epoch": (early.best_epoch + 1) if early.best_epoch is not None else None,
        "epochs_run": len(history),
        "early_stopping_metric": config.early_stopping.metric,
        "history": history,
        "train_seconds": round(train_seconds, 1),
        "device": str(device),
        "threshold_method": config.threshold_method,
        **(extra_tail or {}),
    }
    if data.X_test is not None:
        test_probs = torch.sigmoid(predict(model, to_tensor(data.X_test, device))).numpy()
        test_auroc = per_label_auroc(data.Y_test, test_probs, codes)
        metrics.update(
            {
                f"{test_prefix}macro_auroc": macro(test_auroc),
                f"{test_prefix}auroc": test_auroc,
                "test_operating_points": operating_points(data.Y_test, test_probs, thresholds, codes),
            }
        )
    return thresholds, metrics


def export_and_register(
    config: TrainConfig,
    registry: ModelRegistry,
    model_cpu: nn.Module,
    X_val: np.ndarray,
    metrics: dict[str, Any],
    make_card: Callable[[dict[str, Any]], ModelCard],
) -> RegisteredModel:
    """Export ``model_cpu`` (state dict, ONNX, TorchScript) with parity checks on validation
    inputs (adding the parity figures to ``metrics``), then register it with
    ``make_card(metrics)`` and set the config's alias."""
    checkpoint_dir = Path(config.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="export-", dir=checkpoint_dir))
    try:
        torch.save(state_dict_cpu(model_cpu), staging / "state_dict.pt")
        parity_inputs = torch.from_numpy(np.ascontiguousarray(X_val[: config.export.parity_samples]))
        example = parity_inputs[:1]
        if config.export.onnx:
            export_onnx(model_cpu, staging / "model.onnx", example)
            metrics["onnx_parity_max_abs_diff"] = require_parity(
                model_cpu, staging / "model.onnx", parity_inputs, tolerance=config.export.parity_tolerance
            )
        if config.export.torchscript:
            export_torchscript(model_cpu, staging / "model.pt", example)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.load(str(staging / "model.pt"))
            with torch.no_grad():
                diff = float(
                    (torch.sigmoid(scripted(parity_inputs)) - torch.sigmoid(model_cpu(parity_inputs))).abs().max()
                )
            if diff > config.export.parity_tolerance:
                raise RuntimeError(f"TorchScript export differs from the trained model by {diff:.3g}")
            metrics["torchscript_parity_max_abs_diff"] = diff
        registered = registry.register(config.registry.name, staging, make_card(metrics))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if config.registry.alias:
        registry.set_alias(registered.name, config.registry.alias, registered.version)
    registered = registry.resolve(registered.ref)
    log.info("registered %s (val macro AUROC %.4f)", registered.ref, metrics["val_macro_auroc"])
    return registered

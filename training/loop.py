"""The epoch loop shared by the ECG and CXR trainers: loss, optimizer steps, validation, early
stopping and a checkpoint per epoch (``training.state``). Task specifics (batch inputs, extra
metrics, the summary line) come in as ``FitHooks``; what follows the loop is ``training.finalize``.

The same loop runs alone or as one rank of a data-parallel run (``training.common.Replica``,
driven by ``training.distributed``): the model is wrapped in DistributedDataParallel, each rank
trains on its shard of every epoch's permutation, validation predictions are gathered, and only
the checkpoint store decides where checkpoints go (a local file, or Ray Train's reports).

Targets may hold NaN (unknown labels): the loss masks those cells out, class weights count known
cells only, and the metrics skip them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from training.common import (
    CHECKPOINT_FILENAME,
    SINGLE_PROCESS,
    EarlyStopping,
    Precision,
    Replica,
    state_dict_cpu,
)
from training.config import TrainConfig
from training.metrics import macro, per_label_auroc
from training.state import LocalCheckpoints, TrainingState, config_hash
from training.tensors import BatchInputs, Predict, batches, steps_per_epoch, to_tensor

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, Any]], None]  # (epoch, metrics) after each epoch's checkpoint


@dataclass(frozen=True)
class FitHooks:
    """What a task plugs into the loop: how to predict (batched, on its device), its batch inputs
    (augmented or not; default: the rows as they are), extra validation metrics, a suffix for the
    epoch's summary line and what to redo on a model restored from a checkpoint."""

    predict: Predict
    batch_inputs: BatchInputs | None = None
    extra_val_metrics: Callable[[np.ndarray], dict[str, Any]] | None = None
    summary_suffix: Callable[[dict[str, Any]], str] | None = None
    after_resume: Callable[[nn.Module], nn.Module] | None = None


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


def loss_functions(
    data: Any, codes: Sequence[str], device: torch.device, replica: Replica
) -> tuple[MaskedBCE, MaskedBCE]:
    """The training and validation losses, class-weighted from the training targets; warns (once,
    on rank 0) about labels with no positive training case."""
    no_positive = [code for j, code in enumerate(codes) if not (data.Y_train[:, j] == 1).any()]
    if no_positive and replica.is_main:
        log.warning(
            "no training case is positive for %s: the model cannot learn these labels from these data",
            ", ".join(no_positive),
        )
    pos_weight = class_pos_weight(data.Y_train, device)
    criterion = MaskedBCE(pos_weight, masked=bool(np.isnan(data.Y_train).any()))
    return criterion, MaskedBCE(pos_weight.cpu(), masked=bool(np.isnan(data.Y_val).any()))


def data_parallel(model: nn.Module, device: torch.device, replica: Replica) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel for a rank of a distributed run; itself otherwise."""
    if not replica.distributed:
        return model
    on_gpu = device.type == "cuda"
    return DistributedDataParallel(
        model, device_ids=[device.index] if on_gpu else None, output_device=device.index if on_gpu else None
    )


@dataclass
class EpochRunner:
    """The epochs of one run on one rank: train on this rank's shard of a seeded permutation,
    validate (predictions gathered across ranks), track the best weights, report."""

    config: TrainConfig
    state: TrainingState
    model: nn.Module  # what the forward pass runs: the DDP wrapper of state.model, or state.model itself
    data: Any
    codes: Sequence[str]
    device: torch.device
    precision: Precision
    replica: Replica
    hooks: FitHooks
    progress: bool
    on_epoch_end: EpochCallback | None = None
    stats: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.X_train, self.Y_train = (
            to_tensor(self.data.X_train, self.device),
            to_tensor(self.data.Y_train, self.device),
        )
        self.X_val = to_tensor(self.data.X_val, self.device)
        self.criterion, self.val_criterion = loss_functions(self.data, self.codes, self.device, self.replica)
        self.batch_size = self.replica.batch_size(self.config.optim.batch_size)
        self.batch_inputs: BatchInputs = self.hooks.batch_inputs or self.rows_as_they_are

    def rows_as_they_are(self, X: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Batch inputs without augmentation: the rows, on the device."""
        return X[index].to(self.device, non_blocking=True)

    def step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the samples ``index``; returns the batch loss."""
        state, grad_clip = self.state, self.config.optim.grad_clip
        xb = self.batch_inputs(self.X_train, index)
        yb = self.Y_train[index].to(self.device, non_blocking=True)
        with self.precision.autocast(self.device):
            logits = self.model(xb)
        loss = self.criterion(logits.float(), yb)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if grad_clip:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        return loss

    def train_epoch(self, epoch: int) -> float:
        """One pass over this rank's shard; returns the mean training loss."""
        self.model.train()
        order = self.replica.shard(torch.randperm(len(self.data.X_train), generator=self.state.generator))
        if self.stats is not None:
            self.stats.setdefault("first_epoch_indices", order.tolist())
        running, seen = 0.0, 0
        with tqdm(
            batches(len(order), self.batch_size, order),
            desc=f"epoch {epoch + 1}/{self.config.optim.epochs}",
            disable=not self.progress or not self.replica.is_main,
            leave=False,
            unit="batch",
        ) as bar:
            for index in bar:
                loss = self.step(index.to(self.X_train.device))
                running += float(loss.detach()) * len(index)
                seen += len(index)
                bar.set_postfix(loss=f"{running / seen:.4f}")
        if self.stats is not None:
            self.stats["samples"] = self.stats.get("samples", 0) + seen
            self.stats["epochs"] = self.stats.get("epochs", 0) + 1
        return running / max(seen, 1)

    def validation_logits(self) -> torch.Tensor:
        """The (unwrapped) model's logits for the whole validation set, gathered across ranks."""
        base = self.state.model
        if not self.replica.distributed:
            return self.hooks.predict(base, self.X_val)
        # The unwrapped module: DDP's forward would wait for the other ranks' (buffer sync).
        self.replica.sync_buffers(base)
        return self.replica.gather_rows(
            lambda index: self.hooks.predict(base, self.X_val[index.to(self.X_val.device)]),
            len(self.data.X_val),
            len(self.codes),
        )

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train and validate one epoch; records its metrics, the best weights and whether to stop."""
        state = self.state
        train_loss = self.train_epoch(epoch)
        val_logits = self.validation_logits()
        val_probs = torch.sigmoid(val_logits).numpy()
        val_auroc = per_label_auroc(self.data.Y_val, val_probs, self.codes)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": float(self.val_criterion(val_logits, torch.from_numpy(self.data.Y_val))),
            "val_macro_auroc": macro(val_auroc),
            "val_auroc": val_auroc,
            **(self.hooks.extra_val_metrics(val_probs) if self.hooks.extra_val_metrics is not None else {}),
            "lr": state.optimizer.param_groups[0]["lr"],
        }
        state.history.append(metrics)
        if state.early.step(metrics[self.config.early_stopping.metric], epoch):
            state.best_state = state_dict_cpu(state.model)
        state.finished = state.early.should_stop or epoch == self.config.optim.epochs - 1
        return metrics

    def report(self, epoch: int, metrics: dict[str, Any]) -> None:
        """The epoch's summary line (tqdm and log) and the caller's ``on_epoch_end`` (rank 0 only)."""
        summary = (
            f"epoch {epoch + 1}/{self.config.optim.epochs}: train loss {metrics['train_loss']:.4f}, val loss "
            f"{metrics['val_loss']:.4f}, val macro AUROC {metrics['val_macro_auroc']:.4f}"
        )
        if self.hooks.summary_suffix is not None:
            summary += self.hooks.summary_suffix(metrics)
        if self.progress and self.replica.is_main:
            tqdm.write(summary)
        log.info(summary)
        if self.on_epoch_end is not None and self.replica.is_main:
            self.on_epoch_end(epoch, metrics)


def restore_latest(
    state: TrainingState, checkpoints: Any, run_hash: str, device: torch.device, hooks: FitHooks
) -> None:
    """Continue from the checkpoint store's latest checkpoint, if it has one (then ``hooks.after_resume``)."""
    start_from = checkpoints.latest()
    if start_from is None:
        return
    state.resume(start_from, run_hash, device)
    if hooks.after_resume is not None:
        state.model = hooks.after_resume(state.model)


def fit(
    config: TrainConfig,
    model: nn.Module,
    data: Any,
    *,
    codes: Sequence[str],
    device: torch.device,
    precision: Precision,
    generator: torch.Generator,
    hooks: FitHooks,
    progress: bool,
    resume: bool,
    on_epoch_end: EpochCallback | None,
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
    optim = config.optim
    steps = steps_per_epoch(replica.shard_length(len(data.X_train)), replica.batch_size(optim.batch_size))
    state = TrainingState.start(config, model, steps * optim.epochs, precision, generator)
    checkpoints = checkpoints or LocalCheckpoints(Path(config.checkpoint_dir) / CHECKPOINT_FILENAME, resume)
    run_hash = config_hash(config)
    restore_latest(state, checkpoints, run_hash, device, hooks)
    runner = EpochRunner(
        config,
        state,
        data_parallel(state.model, device, replica),
        data,
        codes,
        device,
        precision,
        replica,
        hooks,
        progress,
        on_epoch_end,
        stats,
    )
    for epoch in range(state.start_epoch, optim.epochs):
        if state.finished:
            break
        metrics = runner.run_epoch(epoch)
        checkpoints.save(state.writer(epoch, run_hash), metrics)
        runner.report(epoch, metrics)
        if state.early.should_stop:
            stopping = config.early_stopping
            log.info("early stopping: no %s improvement for %d epochs", stopping.metric, state.early.patience)
            break
    if state.best_state is not None:
        state.model.load_state_dict(state.best_state)
    return state.model, state.history, state.early

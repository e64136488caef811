"""Training-loop pieces shared by the ECG and (later) CXR trainers.

Seeding, device and mixed-precision selection, early stopping, and checkpoints that resume a run
exactly: a checkpoint holds the model, optimizer, LR scheduler, gradient scaler, early-stopping
state and every random number generator the loop draws from, so an interrupted run continued
from its last checkpoint ends with the same weights as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

CHECKPOINT_FILENAME = "last.pt"


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA). Returns a dedicated torch.Generator, seeded
    from ``seed``, for the loop's own sampling (shuffling), so that other code drawing from the
    global generator cannot shift the batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def select_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


@dataclass(frozen=True)
class Precision:
    """Mixed precision for a device: autocast on CUDA only (bfloat16 where supported, else float16
    with a gradient scaler); full float32 on CPU, where autocast slows convs down."""

    enabled: bool
    dtype: torch.dtype
    use_scaler: bool

    def autocast(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.enabled)

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.use_scaler)


def select_precision(device: torch.device) -> Precision:
    if device.type != "cuda":
        return Precision(False, torch.float32, False)
    if torch.cuda.is_bf16_supported():
        return Precision(True, torch.bfloat16, False)
    return Precision(True, torch.float16, True)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device`` and use the channels-last layout for nets with 2-D convs (image models):
    on CUDA (tensor cores) and on CPU too (oneDNN: the small chest X-ray DenseNet's training step runs
    ~3x faster on 2 cores). 1-D conv nets (ECG) have no channels-last layout and stay as they are."""
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    if any(p.ndim == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)
    return model


class EarlyStopping:
    """Stop after ``patience`` epochs without improving ``mode`` ("max"/"min") by ``min_delta``."""

    def __init__(self, patience: int, mode: Literal["max", "min"] = "max", min_delta: float = 0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record an epoch's metric; True if it is the new best."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights (safe to keep while training continues)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    epoch: int,
    early_stopping: EarlyStopping,
    generator: torch.Generator | None = None,
    **extra: Any,
) -> Path:
    """Write everything needed to continue after ``epoch`` (0-based, completed). Atomic: written
    beside and renamed, so a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "epoch": epoch,
        "model": state_dict_cpu(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "early_stopping": early_stopping.state_dict(),
        "rng": rng_state(generator),
        **extra,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    early_stopping: EarlyStopping,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Restore a ``save_checkpoint`` file into the given objects; returns the whole payload
    (``epoch`` and any extras). RNG states are restored last, so nothing here shifts them."""
    # weights_only=False: the payload holds Python/NumPy RNG states. Only load checkpoints this
    # code wrote (they live in the run's own checkpoint folder).
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    model.load_state_dict(payload["model"])
    if device is not None:
        model.to(device)
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and payload.get("scaler") is not None:
        scaler.load_state_dict(payload["scaler"])
    early_stopping.load_state_dict(payload["early_stopping"])
    restore_rng_state(payload["rng"], generator)
    return payload


# --------------------------------------------------------------------------------------------
# Data-parallel replicas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel run: rank 0 of 1 when training alone, one of
    ``world_size`` DDP ranks under Ray Train (training.distributed).

    Every rank draws the same epoch permutation from the same (seeded, checkpointed) generator and
    keeps its own slice of it (DistributedSampler-style: padded by repeating the first indices so
    each rank takes the same number of steps); validation rows are split into contiguous chunks
    and the predictions gathered, so every rank sees identical metrics and early-stopping decisions.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # the rank's device (Ray: ray.train.torch.get_device())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def batch_size(self, global_batch_size: int) -> int:
        """Per-rank batch: the configured batch is the global one (at least 2 per rank: BatchNorm)."""
        return max(2, global_batch_size // self.world_size)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return order
        per_rank = math.ceil(len(order) / self.world_size)
        padding = per_rank * self.world_size - len(order)
        padded = torch.cat([order, order[:padding]]) if padding else order
        return padded[self.rank :: self.world_size]

    def shard_length(self, n: int) -> int:
        return math.ceil(n / self.world_size)

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP broadcasts them before
        each training forward, but each rank's own last forward then updates its copy: validating
        with those would score a mix of models, not the one rank 0 checkpoints."""
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def gather_rows(self, compute: Callable[[torch.Tensor], torch.Tensor], n: int, width: int) -> torch.Tensor:
        """``compute(index)`` → rows for those indices, run on each rank's contiguous chunk of
        ``range(n)`` and gathered in order on every rank (CPU float32 [n, width])."""
        if not self.distributed:
            return compute(torch.arange(n))
        per_rank = math.ceil(n / self.world_size)
        index = torch.arange(self.rank * per_rank, min((self.rank + 1) * per_rank, n))
        rows = compute(index) if len(index) else torch.zeros((0, width))
        padded = torch.zeros((per_rank, width), dtype=torch.float32)
        padded[: len(rows)] = rows.float()
        comm = self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")
        parts = [torch.zeros_like(padded, device=comm) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.to(comm))
        return torch.cat([p.cpu() for p in parts])[:n]


SINGLE_PROCESS = Replica()


class BatchAugment:
    """Apply a MONAI randomizable composition to each sample of a batch, seeded per batch: the
    seed comes from the trainer's checkpointed generator, so a resumed run augments exactly as an
    uninterrupted one would."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, batch: torch.Tensor, seed: int) -> torch.Tensor:
        self.transform.set_random_state(seed=int(seed))
        out = [self.transform(sample) for sample in batch]
        return torch.stack([x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x) for x in out]).to(
            batch.dtype
        )

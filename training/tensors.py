"""Run set-up and the tensors the training loop feeds on, shared by the ECG and CXR trainers:
threads, seeds, device and precision; the seeded train/validation split; batches of indices; copies
to the device; batched prediction; and augmented batch inputs seeded from the run's generator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from training.common import (
    SINGLE_PROCESS,
    BatchAugment,
    Precision,
    Replica,
    seed_everything,
    select_device,
    select_precision,
)
from training.config import TrainConfig


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

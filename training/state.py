"""What a training checkpoint holds and where it goes: ``TrainingState`` (the model, the optimisation
objects, the loop's generator, history, best weights), the config hash that ties a checkpoint to
its run, and ``LocalCheckpoints`` (``checkpoint_dir/last.pt``; Ray Train's store is
``training.distributed.RayCheckpoints``)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.common import EarlyStopping, Precision, load_checkpoint, save_checkpoint
from training.config import TrainConfig

log = logging.getLogger(__name__)


def make_scheduler(optimizer: torch.optim.Optimizer, optim, total_steps: int):
    if optim.scheduler == "onecycle" and total_steps >= 4:
        # The warm-up must span at least two steps: OneCycleLR divides by its phase lengths
        # (runs of fewer than four steps, as in smoke tests, fall back to cosine annealing).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optim.lr, total_steps=total_steps, pct_start=max(0.25, 2.0 / total_steps)
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def config_hash(config: TrainConfig) -> str:
    """What determines the weights: a checkpoint only resumes the run it came from."""
    relevant = config.model_dump(
        mode="json", include={"task", "model", "data", "optim", "seed", "early_stopping", "augment"}
    )
    relevant["world_size"] = config.distributed.num_workers
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


class LocalCheckpoints:
    """``checkpoint_dir/last.pt``, rewritten after every epoch; resumed from when asked to."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.resume = Path(path), resume

    def latest(self) -> Path | None:
        return self.path if self.resume and self.path.is_file() else None

    def save(self, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        write(self.path)


@dataclass
class TrainingState:
    """What a checkpoint holds and restores: the (unwrapped) model, the optimisation objects, the
    loop's generator, the history, the best weights so far and whether the run has finished."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    early: EarlyStopping
    generator: torch.Generator
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    finished: bool = False

    @classmethod
    def start(
        cls, config: TrainConfig, model: nn.Module, steps: int, precision: Precision, generator: torch.Generator
    ) -> TrainingState:
        """AdamW, its LR schedule over ``steps`` optimizer steps, the gradient scaler and early stopping."""
        optim = config.optim
        optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        stopping = config.early_stopping
        early = EarlyStopping(stopping.patience, stopping.mode, stopping.min_delta)
        return cls(model, optimizer, make_scheduler(optimizer, optim, steps), precision.make_scaler(), early, generator)

    def resume(self, path: Path, run_hash: str, device: torch.device) -> None:
        """Continue after the checkpoint at ``path``, which must come from a run of the same config."""
        payload = load_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            early_stopping=self.early,
            generator=self.generator,
            device=device,
        )
        if payload.get("config_hash") != run_hash:
            raise ValueError(
                f"checkpoint {path} belongs to a different training config; remove it or train with resume=False"
            )
        self.start_epoch, self.history = payload["epoch"] + 1, payload["history"]
        self.best_state, self.finished = payload["best_state"], payload["finished"]
        log.info("resuming from %s after epoch %d", path, payload["epoch"] + 1)

    def writer(self, epoch: int, run_hash: str) -> Callable[[Path], None]:
        """Writes this state, after ``epoch``, to the path the checkpoint store chooses."""

        def write(path: Path) -> None:
            save_checkpoint(
                path,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                epoch=epoch,
                early_stopping=self.early,
                generator=self.generator,
                history=self.history,
                best_state=self.best_state,
                finished=self.finished,
                config_hash=run_hash,
            )

        return write

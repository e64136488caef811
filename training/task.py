"""A task's trainer: ``fit`` (load the data, build the network, train: what every rank of a
distributed run does) then ``finalize`` (thresholds, metrics, export, card, registration: rank 0
only). Calling a ``TaskTrainer`` runs both in this process: ``train_ecg`` and ``train_cxr`` are
the two instances (``training.ecg``, ``training.cxr``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.registry import ModelRegistry, RegisteredModel
from training.common import SINGLE_PROCESS, EarlyStopping, Precision, Replica, prepare_model
from training.config import TrainConfig
from training.data import TrainingData
from training.loop import EpochCallback, FitHooks, fit
from training.tensors import setup_run

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


@dataclass(frozen=True)
class RunPlace:
    """Where a rank trains: the loop's seeded generator, the device, its precision, the replica."""

    generator: torch.Generator
    device: torch.device
    precision: Precision
    replica: Replica


LoadData = Callable[[TrainConfig, bool], TrainingData]  # (config, progress) -> the splits
BuildModel = Callable[[TrainConfig, TrainingData], nn.Module]  # the untrained network for the data's labels
MakeHooks = Callable[[TrainConfig, TrainingData, RunPlace], FitHooks]
Finalize = Callable[[TrainConfig, ModelRegistry, FitOutcome], RegisteredModel]


@dataclass(frozen=True)
class TaskTrainer:
    """Train per ``config``, export, check ONNX parity, write the card and register the model.

    Called as ``train_ecg(config, registry=None, progress=True, resume=False, on_epoch_end=None)``:

    - registry: where to register (default: ``config.registry.root`` or the default registry).
    - progress: tqdm bars for data loading and epochs.
    - resume: continue from ``checkpoint_dir/last.pt`` if it belongs to this config (same
      model/data/optim/seed/augment settings); a finished run goes straight to export/registration.
    - on_epoch_end: called with (epoch, metrics) after each epoch's checkpoint is written.

    Returns the registered version, with the config's alias set. (Several workers:
    ``training.distributed.train``.)
    """

    task: str
    load_data: LoadData
    build_model: BuildModel
    hooks: MakeHooks
    finalize: Finalize

    def __call__(
        self,
        config: TrainConfig,
        registry: ModelRegistry | None = None,
        progress: bool = True,
        resume: bool = False,
        on_epoch_end: EpochCallback | None = None,
    ) -> RegisteredModel:
        registry = registry or ModelRegistry(config.registry.root)
        outcome = self.fit(config, progress=progress, resume=resume, on_epoch_end=on_epoch_end)
        return self.finalize(config, registry, outcome)

    def fit(
        self,
        config: TrainConfig,
        *,
        progress: bool = True,
        resume: bool = False,
        on_epoch_end: EpochCallback | None = None,
        replica: Replica = SINGLE_PROCESS,
        checkpoints: Any = None,
    ) -> FitOutcome:
        """Load the data and train (no export): the part every rank of a distributed run does."""
        started = time.perf_counter()
        generator, device, precision = setup_run(config, self.task, replica)
        data = self.load_data(config, progress and replica.is_main)
        log.info(
            "%s training on %s (AMP %s, rank %d/%d): %d train / %d val cases (%s), labels %s",
            self.task.upper(),
            device,
            precision.enabled,
            replica.rank,
            replica.world_size,
            len(data.X_train),
            len(data.X_val),
            data.counts,
            ", ".join(data.labels),
        )
        model = prepare_model(self.build_model(config, data), device)
        hooks = self.hooks(config, data, RunPlace(generator, device, precision, replica))
        stats: dict[str, Any] = {}
        model, history, early = fit(
            config,
            model,
            data,
            codes=data.labels,
            device=device,
            precision=precision,
            generator=generator,
            hooks=hooks,
            progress=progress,
            resume=resume,
            on_epoch_end=on_epoch_end,
            replica=replica,
            checkpoints=checkpoints,
            stats=stats,
        )
        return FitOutcome(model, data, history, early, device, precision, time.perf_counter() - started, stats)

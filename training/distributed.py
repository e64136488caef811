"""The same training config on several GPUs or nodes: Ray Train's TorchTrainer (DDP).

``train(config)`` is what ``preread train`` calls: in this process when
``distributed.num_workers`` is 1, else ``train_distributed``:

- Ray: the running instance, ``distributed.address``, or a local one started (and stopped) here.
- Workers: ``num_workers`` processes, each with ``resources_per_worker``; NCCL with one GPU per
  worker when ``use_gpu``, else Gloo on CPU. Every worker runs the task's own trainer's fit
  (``training.ecg.train_ecg.fit`` / ``training.cxr.train_cxr.fit``) as one rank (``training.common.Replica``):
  same data, same seeded generator, its shard of each epoch's permutation, gradients averaged
  by DistributedDataParallel, validation predictions gathered so all ranks stop together.
  ``optim.batch_size`` is the global batch (each rank takes batch_size / num_workers).
- Checkpoints: after every epoch rank 0 reports the full training state (the same payload as a
  local run's last.pt) with ``ray.train.report(checkpoint=...)``; the run lives in
  ``distributed.storage_path`` (default ``checkpoint_dir/ray``) under a name derived from the
  config, so ``resume=True`` continues from the last reported epoch (and a worker failure, with
  ``max_failures``, restarts the group from it). A fresh run (``resume=False``) starts clean.
- Export: rank 0 alone exports (ONNX + TorchScript, parity-checked) and registers, through the
  same ``export_and_register`` a local run uses; the card records the world size and what each
  rank trained on.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, Unpack

import torch
import torch.distributed as dist

from models.registry import ModelRegistry, RegisteredModel
from training.common import CHECKPOINT_FILENAME, Replica
from training.config import TrainConfig
from training.cxr import train_cxr
from training.ecg import train_ecg
from training.loop import EpochCallback
from training.state import config_hash
from training.task import TaskTrainer

log = logging.getLogger(__name__)

RESULT_FILENAME = "registered.json"


TRAINERS: dict[str, TaskTrainer] = {"ecg": train_ecg, "cxr": train_cxr}


class RunOptions(TypedDict, total=False):
    """The keywords of a training call (``TaskTrainer.__call__`` holds their defaults): tqdm bars,
    resuming from the last checkpoint, and the per-epoch callback."""

    progress: bool
    resume: bool
    on_epoch_end: EpochCallback | None


def train(config: TrainConfig, registry: ModelRegistry | None = None, **options: Unpack[RunOptions]) -> RegisteredModel:
    """Train, export and register per ``config`` — alone (``train_ecg`` / ``train_cxr``) or, with
    ``distributed.num_workers`` > 1, on Ray Train (``train_distributed``)."""
    if config.distributed.num_workers == 1:
        return TRAINERS[config.task](config, registry, **options)
    return train_distributed(
        config,
        registry,
        progress=options.get("progress", True),
        resume=options.get("resume", False),
        on_epoch_end=options.get("on_epoch_end"),
    )


def _absolute(config: TrainConfig) -> TrainConfig:
    """Paths resolved here (workers may run in another directory, or on another node)."""
    data = config.data.model_copy(
        update={
            k: Path(v).resolve() for k, v in (("path", config.data.path), ("cache_dir", config.data.cache_dir)) if v
        }
    )
    registry = config.registry.model_copy(
        update={"root": Path(config.registry.root).resolve()} if config.registry.root else {}
    )
    return config.model_copy(
        update={"checkpoint_dir": Path(config.checkpoint_dir).resolve(), "data": data, "registry": registry}
    )


def run_name(config: TrainConfig) -> str:
    return f"{config.registry.name}-{config.task}-{config_hash(config)[:12]}"


def storage_path(config: TrainConfig) -> Path:
    return Path(config.distributed.storage_path or Path(config.checkpoint_dir) / "ray").resolve()


class RayCheckpoints:
    """Checkpoint store for a rank under Ray Train: resumes from ``ray.train.get_checkpoint()``;
    rank 0 reports each epoch's state as a checkpoint, the other ranks report metrics only (every
    rank must call report the same number of times)."""

    def __init__(self, replica: Replica):
        self.replica = replica
        self.local = Path(tempfile.mkdtemp(prefix="preread-ray-ckpt-"))
        self.last: Path | None = None  # the newest training state on this machine

    def latest(self) -> Path | None:
        import ray.train  # noqa: PLC0415 - Ray is heavy and optional: only distributed runs load it

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        folder = Path(checkpoint.to_directory(str(self.local / "restored")))
        path = folder / CHECKPOINT_FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"the Ray Train checkpoint {checkpoint.path} holds no {CHECKPOINT_FILENAME}")
        self.last = path
        return path

    def _report(self, metrics: dict[str, Any], files: Callable[[Path], None] | None) -> None:
        import ray.train  # noqa: PLC0415 - Ray is heavy and optional: only distributed runs load it

        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) and v == v}
        if not self.replica.is_main or files is None:
            ray.train.report(scalars)
            return
        with tempfile.TemporaryDirectory(prefix="report-", dir=self.local) as folder:
            files(Path(folder))
            ray.train.report(scalars, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def save(self, write: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        def files(folder: Path) -> None:
            self.last = self.local / CHECKPOINT_FILENAME
            write(self.last)
            shutil.copy2(self.last, folder / CHECKPOINT_FILENAME)

        self._report(metrics, files if self.replica.is_main else None)

    def report_final(self, result: dict[str, Any]) -> None:
        """The last report: the final training state again (so resuming a finished run goes straight
        to export) plus the registration, for the driver."""

        def files(folder: Path) -> None:
            if self.last is not None:
                shutil.copy2(self.last, folder / CHECKPOINT_FILENAME)
            (folder / RESULT_FILENAME).write_text(json.dumps(result, indent=2))

        self._report({"registered": result.get("registered") or ""}, files if self.replica.is_main else None)

    def close(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """One rank: train, then (rank 0) export and register, then the final report."""
    import ray.train  # noqa: PLC0415 - Ray is heavy and optional: only distributed runs load it
    import ray.train.torch  # noqa: PLC0415 - Ray is heavy and optional: only distributed runs load it

    config = TrainConfig.model_validate(loop_config["config"])
    context = ray.train.get_context()
    device = ray.train.torch.get_device() if config.distributed.use_gpu else torch.device("cpu")
    replica = Replica(context.get_world_rank(), context.get_world_size(), device)
    checkpoints = RayCheckpoints(replica)
    try:
        trainer = TRAINERS[config.task]
        outcome = trainer.fit(
            config,
            progress=loop_config["progress"],
            on_epoch_end=loop_config["on_epoch_end"],
            replica=replica,
            checkpoints=checkpoints,
        )
        mine = {
            "rank": replica.rank,
            "device": str(device),
            "samples": outcome.stats.get("samples", 0),
            "epochs": outcome.stats.get("epochs", 0),
            "first_epoch_indices": outcome.stats.get("first_epoch_indices"),
        }
        ranks: list[Any] = [None] * replica.world_size
        dist.all_gather_object(ranks, mine)
        result: dict[str, Any] = {"world_size": replica.world_size}
        if replica.is_main:
            outcome.card_metrics["distributed"] = _summary(ranks, len(outcome.data.X_train), config, dist.get_backend())
            registered = trainer.finalize(config, loop_config["registry"], outcome)
            result.update(registered=registered.ref, ranks=outcome.card_metrics["distributed"]["ranks"])
        checkpoints.report_final(result)
    finally:
        checkpoints.close()


def _summary(ranks: list[dict[str, Any]], n_train: int, config: TrainConfig, backend: str) -> dict[str, Any]:
    """What the card says about the run: who trained on what (the first epoch's shards cover the
    training set; they overlap only by the padding that evens the ranks out)."""
    shards = [set(r["first_epoch_indices"] or []) for r in ranks]
    covered = set().union(*shards) if shards else set()
    return {
        "world_size": len(ranks),
        "backend": backend,
        "use_gpu": config.distributed.use_gpu,
        "global_batch_size": config.optim.batch_size,
        "n_train": n_train,
        "first_epoch_covered": len(covered),
        "first_epoch_total": sum(len(s) for s in shards),
        "ranks": [
            {
                "rank": r["rank"],
                "device": r["device"],
                "samples": r["samples"],
                "epochs": r["epochs"],
                "first_epoch_shard": len(s),
            }
            for r, s in zip(ranks, shards)
        ],
    }


def _ray_trainer(
    config: TrainConfig, registry: ModelRegistry, progress: bool, on_epoch_end: EpochCallback | None, name: str
) -> Any:
    """The TorchTrainer that runs ``_worker_loop`` on ``distributed.num_workers`` workers (NCCL on
    GPUs, Gloo on CPUs), keeping the run's checkpoints in ``storage_path(config) / name``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig  # noqa: PLC0415 - Ray, on demand
    from ray.train.torch import TorchConfig, TorchTrainer  # noqa: PLC0415 - Ray, on demand

    settings = config.distributed
    return TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "registry": registry,
            "progress": progress,
            "on_epoch_end": on_epoch_end,
        },
        torch_config=TorchConfig(backend="nccl" if settings.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=settings.num_workers,
            use_gpu=settings.use_gpu,
            resources_per_worker=dict(settings.resources_per_worker) or None,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path(config)),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=settings.max_failures),
        ),
    )


def train_distributed(
    config: TrainConfig,
    registry: ModelRegistry | None,
    *,
    progress: bool,
    resume: bool,
    on_epoch_end: EpochCallback | None,
) -> RegisteredModel:
    """Train ``config`` with ``distributed.num_workers`` Ray Train workers; returns the version rank 0
    registered. ``on_epoch_end`` runs in the rank-0 worker (it is pickled there). (Called by ``train``.)"""
    import ray  # noqa: PLC0415 - Ray is heavy and optional: only distributed runs load it

    config = _absolute(config)
    registry = registry or ModelRegistry(config.registry.root)
    if type(registry) is ModelRegistry and not registry.root.is_absolute():
        registry = ModelRegistry(registry.root.resolve())  # the workers' working directory is not ours
    settings = config.distributed
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=settings.address or "local", include_dashboard=False, log_to_driver=progress)
    storage, name = storage_path(config), run_name(config)
    if not resume:
        shutil.rmtree(storage / name, ignore_errors=True)  # a fresh run: Ray Train would restore it otherwise
    trainer = _ray_trainer(config, registry, progress, on_epoch_end, name)
    try:
        workers = "GPU/NCCL" if settings.use_gpu else "CPU/Gloo"
        log.info("Ray Train: %d workers (%s), run %s in %s", settings.num_workers, workers, name, storage)
        result = trainer.fit()
    except Exception as exc:  # Ray wraps the worker's exception; say which run failed
        raise RuntimeError(f"distributed training failed (run {name} in {storage}): {exc}") from exc
    finally:
        if started_ray:
            ray.shutdown()
    if result.error is not None:
        raise RuntimeError(f"distributed training failed (run {name} in {storage}): {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"distributed training reported no checkpoint (run {name} in {storage})")
    with result.checkpoint.as_directory() as folder:
        outcome = json.loads((Path(folder) / RESULT_FILENAME).read_text())
    registered = registry.resolve(outcome["registered"])
    log.info("registered %s from %d workers", registered.ref, outcome["world_size"])
    return registered

"""Demo models: what `preread serve` trains when the registry lacks a served model, with the
project's own training code: the default ECG model on real ECGs (configs/train/ecg-default.yaml)
and the chest X-ray demo (configs/train/cxr-demo.yaml), each a tracked run like any `preread train`.
Also the one way the CLI trains from a config file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from models import registry as registries
from models.registry import ModelRegistry, Registry, RegistryUnavailable, copy_model
from training.config import load_train_config
from training.distributed import train
from training.tracking import train_tracked

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAINING = {
    "ecg": REPO / "configs" / "train" / "ecg-default.yaml",
    "cxr": REPO / "configs" / "train" / "cxr-demo.yaml",
}


def ensure_demo_models(cfg: Any, names: list[str] | None = None) -> list[str]:
    """Train and register the demo model for every served model the registry lacks (``cfg``: a
    serving config: its ``registry`` and ``models``). Returns the names trained. Each training is a
    tracked run like any `preread train`. Exits with the reason if the registry cannot be reached."""
    registry = cfg.registry.open()
    # Models an earlier preread kept in the file registry's default folder move over instead of retraining.
    legacy = ModelRegistry(registries.DEFAULT_REGISTRY_ROOT.resolve())  # read when called: tests point it elsewhere
    trained = []
    try:
        registry.check()
        for name in names or list(cfg.models):
            if not registry.is_empty(name):
                continue
            if not isinstance(registry, ModelRegistry) and not legacy.is_empty(name):
                moved = copy_model(legacy, registry, name)
                print(
                    f"[preread] moved {name} versions {sorted(moved)} from {legacy.root} into {registry.location}",
                    flush=True,
                )
                continue
            config_path = DEMO_TRAINING.get(name)
            if config_path is None or not config_path.exists():
                raise SystemExit(f"model {name!r} is not registered and there is no demo training for it")
            print(
                f"[preread] registry {registry.location} has no '{name}' model: training the demo model "
                f"({config_path.name}) ...",
                flush=True,
            )
            train_from_config(name, config_path, registry)
            trained.append(name)
    except RegistryUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    return trained


def trainer(task: str) -> Callable[..., Any]:
    """The training function for a task's configs: training.distributed.train, which runs train_ecg or
    train_cxr in this process, or on Ray Train when the config's distributed.num_workers > 1."""
    if task not in ("ecg", "cxr"):
        raise SystemExit(f"unknown task {task!r}")
    return train


def train_from_config(task: str, config_path: Path, registry: Registry | None = None) -> Any:
    """Train per the config file as a tracked MLflow run (unless tracking.enabled is false) and register."""
    config = load_train_config(config_path)
    if config.task != task:
        raise SystemExit(f"{config_path} is a {config.task!r} training config, not {task!r}")
    return train_tracked(config, registry, trainer(task), config_path=config_path)

"""Evaluation fixtures: a registry holding two tiny ECG models trained by the project's own code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import tiny_ecg_config


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory) -> Path:
    """ecg/1 (champion) and ecg/2 (challenger): two tiny xresnets, a few seconds each."""
    from models.registry import ModelRegistry
    from training.ecg import train_ecg

    root = tmp_path_factory.mktemp("eval-registry")
    registry = ModelRegistry(root / "registry")
    for version, (seed, alias) in enumerate([(3, "champion"), (4, "challenger")], start=1):
        config = tiny_ecg_config(root / f"run{version}", epochs=1, seed=seed, registry={"name": "ecg", "alias": alias})
        train_ecg(config, registry=registry, progress=False)
    return registry.root

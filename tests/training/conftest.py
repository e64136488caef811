"""A tiny ECG training config: a few dozen synthetic records, a very small net, 1-3 epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig


def tiny_ecg_config(root: Path, epochs: int = 2, **overrides) -> TrainConfig:
    fields = {
        "task": "ecg",
        "seed": 3,
        "model": {"architecture": "xresnet1d18", "width": 4, "input_pool": 5, "params": {"layers": [1, 1, 1, 1]}},
        "data": {"source": "synthetic", "n": 40, "seed": 2, "val_fraction": 0.3, "test_n": 0},
        "optim": {"epochs": epochs, "batch_size": 8, "lr": 0.01},
        "early_stopping": {"metric": "val_loss", "patience": 5},
        "checkpoint_dir": str(root / "checkpoints"),
        "registry": {"name": "ecg", "alias": "champion"},
        "export": {"parity_samples": 6},
    }
    fields.update(overrides)
    return TrainConfig.model_validate(fields)


@pytest.fixture
def tiny_config(tmp_path) -> TrainConfig:
    return tiny_ecg_config(tmp_path)


@pytest.fixture(scope="session")
def real_inputs(cinc_dir: Path):
    """Four real CinC records through THE preprocessing."""
    import numpy as np

    from datasets.ecg.readers import read_wfdb
    from datasets.ecg.transforms import preprocess_signals

    batch = []
    for header in sorted(cinc_dir.glob("*.hea"))[:4]:
        record = read_wfdb(header).in_standard_order()
        batch.append(preprocess_signals(record.signals, record.sampling_rate))
    return np.stack(batch).astype(np.float32)


# Layouts in their real formats (tests/datasets/layouts.py), for trainings on each adapter.
from tests.datasets.conftest import nih_csv_root, ptbxl_root  # noqa: E402,F401


@pytest.fixture(scope="module")
def local_ray():
    """The running Ray instance if there is one (e.g. the serving tests'), else a small local one
    for this module (stopped afterwards, so a later session fixture can start its own)."""
    import ray
    import ray.train.torch  # ray[train] is a hard dependency: its absence is an error

    if ray.is_initialized():
        yield ray
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()

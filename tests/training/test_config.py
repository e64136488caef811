"""Training configs: the demo config validates; bad configs fail with field-level messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import TrainConfigError, load_train_config

REPO = Path(__file__).resolve().parents[2]


def test_demo_config_is_a_small_synthetic_xresnet():
    config = load_train_config(REPO / "configs" / "train" / "ecg-demo.yaml")
    assert config.task == "ecg" and config.data.source == "synthetic"
    assert config.model.architecture == "xresnet1d18" and config.model.input_pool == 5
    assert config.registry.name == "ecg" and config.registry.alias == "champion"
    assert config.export.onnx and config.export.torchscript


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("data, message", [
    ({"task": "ecg", "model": {"architecture": "resnet9000"}}, "not an ECG architecture"),
    ({"task": "ecg", "optim": {"epochs": 0}}, r"optim\.epochs"),
    ({"task": "ecg", "optim": {"learning_rate": 0.1}}, r"optim\.learning_rate: Extra inputs"),
    ({"task": "ecg", "data": {"source": "cinc"}}, "data.path is required"),
    ({"task": "ecg", "data": {"val_fraction": 1.5}}, r"data\.val_fraction"),
    ({"task": "ecg", "early_stopping": {"metric": "accuracy"}}, r"early_stopping\.metric"),
    ({"model": {"architecture": "xresnet1d18"}}, r"task: Field required"),
    ("- just\n- a list\n", "must be a mapping"),
    ("task: [unclosed\n", "not valid YAML"),
])
def test_invalid_configs_name_the_field(tmp_path, data, message):
    with pytest.raises(TrainConfigError, match=message) as caught:
        load_train_config(write(tmp_path, data))
    assert "train.yaml" in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(TrainConfigError, match="cannot read"):
        load_train_config(tmp_path / "nope.yaml")

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


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": "ecg", "model": {"architecture": "resnet9000"}}, "not an ECG architecture"),
        ({"task": "ecg", "optim": {"epochs": 0}}, r"optim\.epochs"),
        ({"task": "ecg", "optim": {"learning_rate": 0.1}}, r"optim\.learning_rate: Extra inputs"),
        ({"task": "ecg", "data": {"source": "cinc"}}, "data.path is required"),
        ({"task": "ecg", "data": {"val_fraction": 1.5}}, r"data\.val_fraction"),
        ({"task": "ecg", "early_stopping": {"metric": "accuracy"}}, r"early_stopping\.metric"),
        ({"model": {"architecture": "xresnet1d18"}}, r"task: Field required"),
        ("- just\n- a list\n", "must be a mapping"),
        ({"task": "ecg", "data": {"format": "ptbxl"}}, "data.path is required for source 'ptbxl'"),
        (
            {"task": "ecg", "data": {"format": "cinc", "path": "x", "label_set": "superdiagnostic"}},
            "label_set 'superdiagnostic' is not available for 'cinc'",
        ),
        ({"task": "ecg", "data": {"format": "chexpert", "path": "x"}}, "not an ECG source"),
        (
            {"task": "cxr", "model": {"architecture": "densenet_small"}, "data": {"format": "ptbxl", "path": "x"}},
            "not a chest X-ray source",
        ),
        ({"task": "ecg", "data": {"format": "ptbxl", "path": "x", "sampling_rate": 250}}, r"data\.sampling_rate"),
        ({"task": "cxr", "data": {"format": "chexpert", "path": "x", "uncertain": "maybe"}}, r"data\.uncertain"),
        ({"task": "ecg", "data": {"format": "ptbxl", "source": "cinc", "path": "x"}}, r"data\.source: Extra inputs"),
        ({"task": "ecg", "distributed": {"num_workers": 0}}, r"distributed\.num_workers"),
        ({"task": "ecg", "device": "cpu", "distributed": {"num_workers": 2, "use_gpu": True}}, "use_gpu is true but"),
        ({"task": "ecg", "augment": {"probability": 2}}, r"augment\.probability"),
        ("task: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_configs_name_the_field(tmp_path, data, message):
    with pytest.raises(TrainConfigError, match=message) as caught:
        load_train_config(write(tmp_path, data))
    assert "train.yaml" in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(TrainConfigError, match="cannot read"):
        load_train_config(tmp_path / "nope.yaml")


def test_every_example_config_validates():
    configs = sorted((REPO / "configs" / "train").glob("*.yaml")) + sorted((REPO / "tests" / "data").glob("*.yaml"))
    assert len(configs) >= 10
    formats = set()
    for path in configs:
        config = load_train_config(path)
        formats.add(config.data.source)
    assert {"synthetic", "nih+phantom", "ptbxl", "cinc", "nih", "chexpert", "medmnist", "dicom", "worklist"} <= formats


def test_format_is_the_new_name_of_source_and_generated_sets_keep_their_default_size(tmp_path):
    path = write(tmp_path, {"task": "ecg", "data": {"format": "ptbxl", "path": "/d/ptb-xl", "label_set": "rhythm"}})
    config = load_train_config(path)
    assert config.data.source == "ptbxl" and config.data.n is None and config.data.label_set == "rhythm"
    assert load_train_config(write(tmp_path, {"task": "ecg"})).data.n == 2000
    ray = load_train_config(REPO / "configs" / "train" / "ecg-ptbxl-ray.yaml")
    assert ray.distributed.num_workers == 4 and ray.distributed.use_gpu and ray.device == "cuda"


def test_preread_train_refuses_a_config_of_the_other_task(tmp_path):
    from preread.cli import main

    with pytest.raises(SystemExit, match="is a 'ecg' training config, not 'cxr'"):
        main(
            [
                "train",
                "cxr",
                "--config",
                str(REPO / "configs" / "train" / "ecg-demo.yaml"),
                "--registry",
                str(tmp_path / "registry"),
            ]
        )

"""Chest X-ray training end to end (tiny, tests/data/cxr-tiny.yaml): registration, card, exports,
exact resume; the data split and config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.imaging import preprocess_image, read_image_file
from datasets.sources.nih import folder_codes
from datasets.sources.splits import split_by_patient
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES
from models.backends import load_backend
from models.networks import build_network
from models.registry import ModelRegistry
from training.config import TrainConfig, TrainConfigError, load_train_config
from training.cxr import DEMO_CXR_INTENDED_USE, train_cxr
from training.cxr_data import load_cxr_training_data
from training.data import resolve_nih_dir

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "data" / "cxr-tiny.yaml"


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cxr_config(root: Path, **overrides) -> TrainConfig:
    config = load_train_config(TINY)
    fields = config.model_dump()
    fields.update(checkpoint_dir=str(root / "checkpoints"), num_threads=1)
    for key, value in overrides.items():
        if isinstance(value, dict):
            fields[key] = {**fields[key], **value}
        else:
            fields[key] = value
    return TrainConfig.model_validate(fields)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted tiny run (2 epochs): checked as a registration and used as the resume reference."""
    root = tmp_path_factory.mktemp("cxr-straight")
    torch.set_num_threads(1)
    config = tiny_cxr_config(root)
    return config, train_cxr(config, registry=ModelRegistry(root / "registry"), progress=False)


def test_tiny_training_registers_a_demo_model(straight, nih_dir):
    config, registered = straight
    assert registered.ref == "cxr/1" and registered.aliases == ("champion",)
    for name in ("model.onnx", "model.pt", "state_dict.pt", "card.json"):
        assert (registered.path / name).is_file(), name
    card = registered.card
    assert card.task == "cxr" and card.architecture == "densenet_small"
    assert card.demo is True and card.intended_use == DEMO_CXR_INTENDED_USE
    assert "DEMO" in card.intended_use and "not for clinical use" in card.intended_use.lower()
    assert card.labels == list(CXR_LABEL_CODES) and len(card.labels) == 15
    assert set(card.thresholds) == set(CXR_LABEL_CODES)
    assert all(0.05 <= t <= 0.95 for t in card.thresholds.values())
    assert card.input.shape == [None, 1, 64, 64]
    assert card.input.preprocessing == "datasets.imaging.transforms.cxr_preprocess"
    params = card.input.preprocessing_params
    assert params["size"] == 64 and params["channels"] == 1 and params["letterbox"] is True
    assert params["mean"] == pytest.approx([0.449], abs=1e-3) and params["std"] == pytest.approx([0.226], abs=1e-3)
    assert card.architecture_params["in_channels"] == 1
    counts = card.metrics["data_counts"]
    assert counts["nih_train"] + counts["nih_val"] == 40 and counts["phantom_train"] + counts["phantom_val"] == 24
    assert card.training_data.n_train + card.training_data.n_val == 64
    assert card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert card.metrics["torchscript_parity_max_abs_diff"] <= 1e-4
    assert card.metrics["epochs_run"] == 2 and len(card.metrics["history"]) == 2
    assert set(card.metrics["val_nih_auroc"]) == {"PNEUMONIA", "ANY"}  # the two labels the NIH samples carry
    json.loads((registered.path / "card.json").read_text())  # strict JSON (no NaN)

    # ONNX Runtime and TorchScript read the registered version alike on real NIH images.
    paths = sorted((nih_dir / "Pneumonia").glob("*.png"))[:2] + sorted((nih_dir / "No_findings").glob("*.png"))[:2]
    batch = np.stack([preprocess_image(read_image_file(p), size=64) for p in paths])
    p_ort = load_backend(registered.path, "onnxruntime").predict(batch)
    p_torch = load_backend(registered.path, "torch", device="cpu", build_network=build_network).predict(batch)
    assert p_ort.shape == (4, 15)
    assert np.abs(p_ort - p_torch).max() <= 1e-4
    assert [p.name for p in Path(config.checkpoint_dir).iterdir()] == ["last.pt"]


def test_interrupted_then_resumed_training_matches_an_uninterrupted_run(straight, tmp_path):
    _, reference = straight

    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 0:
            raise Interrupted

    config = tiny_cxr_config(tmp_path)
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(Interrupted):
        train_cxr(config, registry=registry, progress=False, on_epoch_end=stop_after_first_epoch)
    assert registry.is_empty("cxr")
    seen = []
    resumed = train_cxr(
        config, registry=registry, progress=False, resume=True, on_epoch_end=lambda epoch, metrics: seen.append(epoch)
    )
    assert seen == [1]  # continued after the first epoch, not from scratch

    a = torch.load(reference.state_dict_path, weights_only=True)
    b = torch.load(resumed.state_dict_path, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert reference.card.metrics["history"] == resumed.card.metrics["history"]
    assert reference.card.thresholds == resumed.card.thresholds

    # A checkpoint only resumes the run it came from.
    with pytest.raises(ValueError, match="different training config"):
        train_cxr(tiny_cxr_config(tmp_path, seed=99), registry=registry, progress=False, resume=True)


def test_nih_split_keeps_patients_apart_and_both_classes_in_validation(tmp_path):
    data = load_cxr_training_data(tiny_cxr_config(tmp_path, data={"source": "nih", "n": None}))
    assert data.counts["nih_train"] + data.counts["nih_val"] == 40 and data.X_test is None
    any_index = CXR_LABEL_CODES.index("ANY")
    assert 0 < data.Y_val[:, any_index].sum() < len(data.Y_val)
    assert data.X_train.shape[1:] == (1, 64, 64) and data.X_train.dtype == np.float32

    groups = ["p1", "p1", "p2", "p3", "p3", "p4", "q1", "q2", "q2", "q3"]
    strata = ["A"] * 6 + ["B"] * 4
    train, val = split_by_patient(groups, strata, 0.3, seed=0)
    assert sorted(np.r_[train, val]) == list(range(10))
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    assert {strata[i] for i in val} == {"A", "B"}

    assert folder_codes("No_findings") == [] and folder_codes("Pneumonia") == ["PNEUMONIA", "ANY"]
    with pytest.raises(ValueError):
        folder_codes("Pneumonai")


def test_nih_folder_resolution(tmp_path, monkeypatch, nih_dir):
    assert resolve_nih_dir(nih_dir) == nih_dir
    (tmp_path / "cxr" / "nih").mkdir(parents=True)
    monkeypatch.setenv("PREREAD_SHARED_DATA", str(tmp_path))
    assert resolve_nih_dir() == tmp_path / "cxr" / "nih"
    with pytest.raises(FileNotFoundError, match="data.path"):
        resolve_nih_dir(tmp_path / "missing")


def test_cxr_configs_validate(tmp_path):
    demo = load_train_config(REPO / "configs" / "train" / "cxr-demo.yaml")
    assert demo.task == "cxr" and demo.model.architecture == "densenet_small"
    # The default model learns from real films only, with a held-out test it never tunes on.
    assert demo.data.source == "nih" and demo.data.image_size <= 224
    assert demo.data.test_path is not None and demo.data.test_fraction > 0 and demo.demo is True
    assert demo.registry.name == "cxr" and demo.registry.alias == "champion"
    assert demo.export.onnx and demo.export.torchscript
    ecg_demo = load_train_config(REPO / "configs" / "train" / "ecg-demo.yaml")
    assert ecg_demo.data.source == "synthetic"

    path = tmp_path / "bad.yaml"
    path.write_text("task: cxr\nmodel: {architecture: xresnet1d18}\ndata: {source: nih}\n")
    with pytest.raises(TrainConfigError, match="not a chest X-ray architecture"):
        load_train_config(path)
    path.write_text("task: cxr\nmodel: {architecture: densenet_small}\ndata: {source: synthetic}\n")
    with pytest.raises(TrainConfigError, match="not a chest X-ray source"):
        load_train_config(path)
    path.write_text("task: ecg\ndata: {source: nih}\n")
    with pytest.raises(TrainConfigError, match="not an ECG source"):
        load_train_config(path)
    with pytest.raises(ValueError, match="got a 'ecg' config"):
        train_cxr(ecg_demo)

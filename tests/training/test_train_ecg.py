"""ECG training end to end (tiny): registration, card, exports, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from models.backends import load_backend
from models.card import DEMO_ECG_INTENDED_USE
from models.networks import build_network
from models.registry import ModelRegistry
from tests.training.conftest import tiny_ecg_config
from training.ecg import choose_thresholds, train_ecg


def test_tiny_training_registers_a_demo_model(tiny_config, tmp_path, real_inputs):
    registry = ModelRegistry(tmp_path / "registry")
    registered = train_ecg(tiny_config, registry=registry, progress=False)

    assert registered.ref == "ecg/1" and registered.aliases == ("champion",)
    assert registry.resolve("ecg@champion").version == 1
    for name in ("model.onnx", "model.pt", "state_dict.pt", "card.json"):
        assert (registered.path / name).is_file(), name
    card = registered.card
    assert card.demo is True and card.intended_use == DEMO_ECG_INTENDED_USE
    assert card.labels == list(ECG_LABEL_CODES) and set(card.thresholds) == set(ECG_LABEL_CODES)
    assert all(0.05 <= t <= 0.95 for t in card.thresholds.values())
    assert card.input.shape == [None, 12, 5000] and card.input.sampling_rate == 500
    assert card.input.preprocessing == "datasets.ecg.transforms.ecg_preprocess"
    assert card.training_data.n_train == 28 and card.training_data.n_val == 12
    assert len(card.training_data.fingerprint_sha256) == 64
    assert card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert card.metrics["epochs_run"] == 2 and len(card.metrics["history"]) == 2
    assert "val_macro_auroc" in card.metrics
    json.loads((registered.path / "card.json").read_text())  # strict JSON (no NaN)
    # Both backends read the registered version and agree on real ECGs.
    p_ort = load_backend(registered.path, "onnxruntime").predict(real_inputs)
    p_torch = load_backend(registered.path, "torch", device="cpu", build_network=build_network).predict(real_inputs)
    assert p_ort.shape == (len(real_inputs), len(ECG_LABEL_CODES))
    assert np.abs(p_ort - p_torch).max() <= 1e-4
    # Staging directories are cleaned up; the checkpoint stays for resuming.
    assert [p.name for p in tiny_config.checkpoint_dir.iterdir()] == ["last.pt"]


def test_interrupted_then_resumed_training_matches_an_uninterrupted_run(tmp_path):
    epochs = 3
    straight = train_ecg(
        tiny_ecg_config(tmp_path / "straight", epochs=epochs),
        registry=ModelRegistry(tmp_path / "reg-straight"),
        progress=False,
    )

    class Interrupted(Exception):
        pass

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 0:
            raise Interrupted

    config = tiny_ecg_config(tmp_path / "resumed", epochs=epochs)
    registry = ModelRegistry(tmp_path / "reg-resumed")
    with pytest.raises(Interrupted):
        train_ecg(config, registry=registry, progress=False, on_epoch_end=stop_after_first_epoch)
    assert registry.is_empty("ecg")
    seen = []
    resumed = train_ecg(
        config, registry=registry, progress=False, resume=True, on_epoch_end=lambda epoch, metrics: seen.append(epoch)
    )
    assert seen == [1, 2]  # continued after the first epoch (with its augmentation stream), not from scratch

    a = torch.load(straight.state_dict_path, weights_only=True)
    b = torch.load(resumed.state_dict_path, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.card.metrics["history"] == resumed.card.metrics["history"]
    assert straight.card.thresholds == resumed.card.thresholds


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    config = tiny_ecg_config(tmp_path, epochs=1)
    train_ecg(config, registry=ModelRegistry(tmp_path / "reg"), progress=False)
    other = tiny_ecg_config(tmp_path, epochs=1, seed=99)
    with pytest.raises(ValueError, match="different training config"):
        train_ecg(other, registry=ModelRegistry(tmp_path / "reg"), progress=False, resume=True)


def test_thresholds():
    Y = np.array([[1], [1], [0], [0]], dtype=np.float32).repeat(len(ECG_LABEL_CODES), axis=1)
    P = np.array([[0.9], [0.7], [0.4], [0.1]], dtype=np.float32).repeat(len(ECG_LABEL_CODES), axis=1)
    for method in ("youden", "f1"):
        thresholds = choose_thresholds(Y, P, method)
        assert all(0.4 < t <= 0.7 for t in thresholds.values()), (method, thresholds)
    assert set(choose_thresholds(Y, P, "fixed").values()) == {0.5}
    single_class = np.zeros_like(Y)
    assert set(choose_thresholds(single_class, P, "youden").values()) == {0.5}

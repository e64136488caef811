"""Inference backends agree with each other on real ECGs and check their inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.backends import InferenceBackend, OnnxRuntimeBackend, TorchBackend, load_backend
from models.ecg.labels import ECG_LABEL_CODES


def test_onnxruntime_and_torch_agree_on_real_ecgs(exported_model_dir, real_ecg_inputs):
    ort_backend = load_backend(exported_model_dir, "onnxruntime", intra_op_threads=1)
    torch_backend = load_backend(exported_model_dir, "torch", device="cpu")
    for backend in (ort_backend, torch_backend):
        assert isinstance(backend, InferenceBackend)
    assert isinstance(ort_backend, OnnxRuntimeBackend) and ort_backend.name == "onnxruntime"
    assert isinstance(torch_backend, TorchBackend) and torch_backend.source == "model.pt"
    p_ort = ort_backend.predict(real_ecg_inputs)
    p_torch = torch_backend.predict(real_ecg_inputs)
    assert p_ort.shape == p_torch.shape == (len(real_ecg_inputs), len(ECG_LABEL_CODES))
    assert p_ort.dtype == p_torch.dtype == np.float32
    assert ((p_ort >= 0) & (p_ort <= 1)).all()
    assert np.abs(p_ort - p_torch).max() <= 1e-4


def test_torch_backend_rebuilds_from_state_dict(exported_model_dir, real_ecg_inputs, tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    for name in ("state_dict.pt", "card.json"):
        shutil.copy(exported_model_dir / name, directory / name)
    from_state = TorchBackend(directory, device="cpu")
    assert from_state.source == "state_dict.pt"
    reference = load_backend(exported_model_dir, "onnx").predict(real_ecg_inputs[:3])
    assert np.abs(from_state.predict(real_ecg_inputs[:3]) - reference).max() <= 1e-4


def test_backends_pick_an_available_device(exported_model_dir):
    backend = load_backend(exported_model_dir)
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert backend.device == expected
    assert backend.providers[-1] == "CPUExecutionProvider"


def test_wrong_input_shape_is_refused(exported_model_dir, real_ecg_inputs):
    for kind in ("onnxruntime", "torch"):
        backend = load_backend(exported_model_dir, kind)
        with pytest.raises(ValueError, match="expected input shape"):
            backend.predict(real_ecg_inputs[:, :8])
        with pytest.raises(ValueError, match="rank"):
            backend.predict(real_ecg_inputs[0])


def test_unknown_backend_and_missing_files(exported_model_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown backend kind 'tensorflow'"):
        load_backend(exported_model_dir, "tensorflow")
    with pytest.raises(FileNotFoundError):
        load_backend(tmp_path, "onnxruntime")

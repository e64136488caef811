"""Inference backends agree with each other on real ECGs and check their inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from models.backends import InferenceBackend, OnnxRuntimeBackend, TorchBackend, load_backend
from models.networks import build_network


def test_onnxruntime_and_torch_agree_on_real_ecgs(exported_model_dir, real_ecg_inputs):
    ort_backend = load_backend(exported_model_dir, "onnxruntime", intra_op_threads=1)
    torch_backend = load_backend(exported_model_dir, "torch", device="cpu", build_network=build_network)
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
    from_state = TorchBackend(directory, device="cpu", build_network=build_network)
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


def test_io_binding_path_gives_the_same_answer(exported_model_dir, real_ecg_inputs):
    """The CUDA path binds inputs/outputs to the device; the same code bound to the CPU here must
    agree with session.run (on a GPU machine predict() takes it with device "cuda")."""
    backend = load_backend(exported_model_dir, "onnxruntime", intra_op_threads=1)
    plain = backend.session.run([backend.output_name], {backend.input_name: real_ecg_inputs})[0]
    bound = backend.run_bound(real_ecg_inputs, "cpu")
    np.testing.assert_array_equal(bound, plain)


def test_fp16_is_a_float16_graph_with_float32_edges_and_stays_fp32_on_cpu(exported_model_dir, real_ecg_inputs):
    import onnx

    from models.backends import float16_model

    half = float16_model(exported_model_dir / "model.onnx")
    weights = [init.data_type for init in half.graph.initializer if len(init.dims) > 1]
    assert weights and all(t == onnx.TensorProto.FLOAT16 for t in weights), "weights not converted"
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    backend = OnnxRuntimeBackend(
        exported_model_dir / "model.onnx", providers=["CPUExecutionProvider"], precision="fp16"
    )
    assert backend.precision == "fp32"  # no float16 kernels on the CPU provider: fp32, with a warning
    with pytest.raises(ValueError, match="precision"):
        OnnxRuntimeBackend(exported_model_dir / "model.onnx", precision="int4")


def test_onnx_flops_count_convolutions_and_matmuls(tmp_path):
    import torch

    from models.export import export_onnx
    from models.flops import onnx_flops

    net = torch.nn.Sequential(
        torch.nn.Conv1d(12, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, 8, 3, padding=1, groups=2),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 7),
    )
    path = export_onnx(net, tmp_path / "net.onnx", torch.randn(1, 12, 100))
    expected = 2 * (12 * 5) * 8 * 100 + 2 * (4 * 3) * 8 * 100 + 2 * 8 * 7
    assert onnx_flops(path, [1, 12, 100]) == expected
    assert onnx_flops(path, [4, 12, 100]) == 4 * expected
    with pytest.raises(ValueError, match="rank"):
        onnx_flops(path, [12, 100])


def test_the_triton_backend_needs_a_url(exported_model_dir):
    with pytest.raises(ValueError, match="needs the server's url"):
        load_backend(exported_model_dir, "triton")

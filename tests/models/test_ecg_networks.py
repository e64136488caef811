"""ECG networks: output shapes, named configurations, ONNX export parity on real ECGs."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from models.ecg.factory import ECG_ARCHITECTURES, build_ecg_model
from models.ecg.inception1d import Inception1d
from models.ecg.xresnet1d import XResNet1d
from models.export import ONNX_INPUT_NAME, ParityError, check_parity, export_onnx, export_torchscript, require_parity

N_LABELS = len(ECG_LABEL_CODES)

# Small versions of every architecture: enough to exercise each code path in well under a second.
SMALL = {
    "xresnet1d18": dict(width=8, input_pool=5),
    "xresnet1d34": dict(width=4, input_pool=5),
    "xresnet1d50": dict(width=4, input_pool=5, layers=(1, 1, 1, 1)),
    "xresnet1d101": dict(width=4, input_pool=5, layers=(1, 1, 2, 1)),
    "inception1d": dict(width=4, depth=3, input_pool=5),
}


def _settle_batchnorm(model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
    """A few training-mode passes so BatchNorm running statistics are not the identity —
    otherwise export parity would be checked on a degenerate network."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(inputs)
    return model.eval()


def test_every_architecture_is_covered():
    assert set(SMALL) == set(ECG_ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(SMALL))
def test_forward_shape(architecture):
    model = build_ecg_model(architecture, N_LABELS, **SMALL[architecture]).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 12, 5000))
    assert out.shape == (3, N_LABELS)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_full_resolution_input_without_pooling():
    model = build_ecg_model("xresnet1d18", N_LABELS, width=4).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 12, 5000)).shape == (2, N_LABELS)
    assert model.features(torch.randn(1, 12, 5000)).shape[:2] == (1, 8)


def test_standard_configurations_match_the_benchmark():
    # xresnet1d101: bottlenecks (expansion 4) in stages of 3/4/23/3 blocks, 64-wide, 256 channels out.
    model = build_ecg_model("xresnet1d101", N_LABELS)
    assert isinstance(model, XResNet1d)
    assert [len(stage) for stage in model.stages] == [3, 4, 23, 3]
    assert model.head[-1].in_features == 2 * 256
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 2.5e6
    inception = build_ecg_model("inception1d", N_LABELS)
    assert isinstance(inception, Inception1d)
    assert inception.kernel_sizes == (39, 19, 9)
    assert len(inception.blocks) == 6 and len(inception.shortcuts) == 2


def test_width_changes_capacity():
    narrow = build_ecg_model("xresnet1d18", N_LABELS, width=8)
    wide = build_ecg_model("xresnet1d18", N_LABELS, width=32)
    assert sum(p.numel() for p in wide.parameters()) > 4 * sum(p.numel() for p in narrow.parameters())


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown ECG architecture 'resnet9000'"):
        build_ecg_model("resnet9000", N_LABELS)


@pytest.mark.parametrize("architecture", ["xresnet1d18", "xresnet1d50", "inception1d"])
def test_onnx_export_parity_on_real_ecgs(architecture, real_ecg_inputs, tmp_path):
    torch.manual_seed(0)
    model = _settle_batchnorm(
        build_ecg_model(architecture, N_LABELS, **SMALL[architecture]), torch.from_numpy(real_ecg_inputs)
    )
    path = export_onnx(model, tmp_path / "model.onnx", torch.from_numpy(real_ecg_inputs[:1]))
    assert check_parity(model, path, real_ecg_inputs) <= 1e-4
    # Dynamic batch axis: one exported graph serves any batch size.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == ONNX_INPUT_NAME
    for size in (1, 5, 8):
        assert session.run(None, {ONNX_INPUT_NAME: real_ecg_inputs[:size]})[0].shape == (size, N_LABELS)


def test_export_uses_opset_17_or_newer(real_ecg_inputs, tmp_path):
    import onnx

    model = build_ecg_model("xresnet1d18", N_LABELS, **SMALL["xresnet1d18"]).eval()
    path = export_onnx(model, tmp_path / "model.onnx", torch.from_numpy(real_ecg_inputs[:1]))
    opsets = {entry.domain: entry.version for entry in onnx.load(str(path)).opset_import}
    assert opsets[""] >= 17
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", torch.from_numpy(real_ecg_inputs[:1]), opset=13)


def test_parity_failure_is_refused(real_ecg_inputs, tmp_path):
    model = _settle_batchnorm(
        build_ecg_model("xresnet1d18", N_LABELS, **SMALL["xresnet1d18"]), torch.from_numpy(real_ecg_inputs)
    )
    path = export_onnx(model, tmp_path / "model.onnx", torch.from_numpy(real_ecg_inputs[:1]))
    with torch.no_grad():  # the model drifts after export: its ONNX file no longer matches it
        model.head[-1].bias += 1.0
    with pytest.raises(ParityError, match="differs from PyTorch"):
        require_parity(model, path, real_ecg_inputs)


def test_torchscript_export_matches(real_ecg_inputs, tmp_path):
    model = _settle_batchnorm(
        build_ecg_model("inception1d", N_LABELS, **SMALL["inception1d"]), torch.from_numpy(real_ecg_inputs)
    )
    path = export_torchscript(model, tmp_path / "model.pt", torch.from_numpy(real_ecg_inputs[:1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        scripted = torch.jit.load(str(path))
    x = torch.from_numpy(real_ecg_inputs)
    with torch.no_grad():
        np.testing.assert_allclose(torch.sigmoid(scripted(x)).numpy(), torch.sigmoid(model(x)).numpy(), atol=1e-5)

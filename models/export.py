"""Export networks to ONNX and TorchScript, and check that ONNX Runtime agrees with PyTorch.

ONNX uses the TorchScript-based exporter (``dynamo=False``): the torch.export-based one needs
``onnxscript``, which is not a project dependency, and the legacy path handles these plain conv
nets with a dynamic batch axis exactly. Serving reads the input/output names below.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.backends import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, TorchBackend
from models.networks import build_network

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |sigmoid(torch) − sigmoid(onnxruntime)| accepted for registration


class ParityError(RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    """Export from a float32 CPU copy in eval mode: BatchNorm uses running stats, dropout is off,
    and the caller's (possibly CUDA, channels-last) training model is left untouched."""
    clone = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
    return clone.eval()


def export_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = ONNX_OPSET) -> Path:
    """Write ``model`` (logits out) as ONNX with a dynamic batch axis. ``example``: one real or
    representative input batch, e.g. [1, 12, 5000]."""
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _cpu_eval_copy(model)
    example = example.detach().to("cpu", torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notices
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    import onnx  # noqa: PLC0415 - heavy; loaded only when exporting or checking ONNX

    onnx.checker.check_model(str(path))
    return path


def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Write ``model`` as a traced TorchScript module (CPU, eval mode; loads without our code)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _cpu_eval_copy(model)
    example = example.detach().to("cpu", torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices; TorchScript still loads everywhere
        traced = torch.jit.trace(module, example, check_trace=True)
        traced = torch.jit.freeze(traced)
        torch.jit.save(traced, str(path))
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def check_parity(
    model: nn.Module, onnx_path: str | Path, inputs: np.ndarray | torch.Tensor, batch_size: int = 16
) -> float:
    """Max |sigmoid(PyTorch) − sigmoid(ONNX Runtime, CPU EP)| over ``inputs`` [N, ...]."""
    import onnxruntime as ort  # noqa: PLC0415 - heavy; loaded only when checking ONNX parity

    module = _cpu_eval_copy(model)
    array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    array = np.ascontiguousarray(array, dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for start in range(0, len(array), batch_size):
        batch = array[start : start + batch_size]
        with torch.no_grad():
            expected = module(torch.from_numpy(batch)).numpy()
        actual = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: batch})[0]
        worst = max(worst, float(np.abs(_sigmoid(expected) - _sigmoid(actual)).max()))
    return worst


def require_parity(
    model: nn.Module, onnx_path: str | Path, inputs: np.ndarray | torch.Tensor, tolerance: float = PARITY_TOLERANCE
) -> float:
    """``check_parity`` that raises ``ParityError`` above ``tolerance``; returns the difference."""
    diff = check_parity(model, onnx_path, inputs)
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(f"ONNX export differs from PyTorch by {diff:.3g} (> {tolerance:g}) on real inputs")
    return diff


def export_registered(registered, out: str | Path, fmt: str = "onnx") -> Path:
    """Copy a registered model's ONNX or TorchScript file (and its card, as ``<file>.card.json``)
    to ``out`` — a file path, or a directory (→ DIR/NAME-vVERSION.onnx|.pt). ``registered`` is a
    ``models.registry.RegisteredModel``. A version registered without the requested file is
    exported from its state dict."""
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"unknown export format {fmt!r}; use 'onnx' or 'torchscript'")
    suffix, filename = (".onnx", "model.onnx") if fmt == "onnx" else (".pt", "model.pt")
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / f"{registered.name}-v{registered.version}{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    source = Path(registered.path) / filename
    if source.is_file():
        shutil.copyfile(source, out)
    else:
        card = registered.card
        network = TorchBackend(
            registered.path, device="cpu", prefer_torchscript=False, build_network=build_network
        ).module
        example = torch.zeros([1 if d is None else d for d in card.input.shape], dtype=torch.float32)
        (export_onnx if fmt == "onnx" else export_torchscript)(network, out, example)
    shutil.copyfile(Path(registered.path) / "card.json", out.with_name(out.name + ".card.json"))
    return out


def check_model_folder(folder: str | Path, card, tolerance: float = PARITY_TOLERANCE, seed: int = 0) -> list[str]:
    """The checks an exported model folder (a data scientist's own, for `preread models register`)
    must pass before registration, as far as its card allows without data: each model file loads
    and maps a batch of two inputs of the card's shape to one finite logit per card label; with
    both ONNX and TorchScript, their probabilities agree within ``tolerance``. ValueError says
    what failed; returns one line per check passed."""
    folder = Path(folder)
    onnx_path, script_path = folder / "model.onnx", folder / "model.pt"
    if not onnx_path.is_file() and not script_path.is_file():
        raise ValueError(f"{folder} holds neither model.onnx nor model.pt")
    shape = list(card.input.shape)
    if not shape or shape[0] is not None or any(d is None or d < 1 for d in shape[1:]):
        raise ValueError(f"card input.shape {shape} must be [None, fixed sizes...] (a dynamic batch axis first)")
    inputs = np.random.default_rng(seed).standard_normal([2, *shape[1:]]).astype(np.float32)
    expected = (2, len(card.labels))
    passed, outputs = [], {}

    def check_output(kind: str, logits: np.ndarray) -> None:
        if logits.shape != expected:
            raise ValueError(
                f"{kind}: output shape {list(logits.shape)} for a batch of 2; the card's "
                f"{len(card.labels)} labels need {list(expected)}"
            )
        if not np.isfinite(logits).all():
            raise ValueError(f"{kind}: non-finite outputs")
        outputs[kind] = logits
        passed.append(f"{kind}: input {shape} → {len(card.labels)} logits per input, batch of 2")

    if onnx_path.is_file():
        import onnx  # noqa: PLC0415 - heavy; loaded only when exporting or checking ONNX
        import onnxruntime as ort  # noqa: PLC0415 - heavy; loaded only when checking ONNX parity

        try:
            onnx.checker.check_model(str(onnx_path))
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            check_output("model.onnx", session.run(None, {name: inputs})[0])
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnx / onnxruntime errors: a broken or mismatched file
            raise ValueError(f"model.onnx does not run on the card's input shape {shape}: {exc}") from None
    if script_path.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = torch.jit.load(str(script_path), map_location="cpu").eval()
            with torch.no_grad():
                check_output("model.pt", module(torch.from_numpy(inputs)).float().numpy())
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch.jit errors: a broken or mismatched file
            raise ValueError(f"model.pt does not run on the card's input shape {shape}: {exc}") from None
    if len(outputs) == 2:
        diff = float(np.abs(_sigmoid(outputs["model.onnx"]) - _sigmoid(outputs["model.pt"])).max())
        if not diff <= tolerance:
            raise ValueError(f"model.onnx and model.pt disagree by {diff:.3g} in probability (> {tolerance:g})")
        passed.append(f"ONNX vs TorchScript: max |Δp| {diff:.2g} ≤ {tolerance:g}")
    return passed

"""Inference backends: one ``predict`` for a batch of preprocessed inputs, whatever runs it.

Every backend returns per-label probabilities (sigmoid of the logits), float32 [B, L], in the
label order of the model's card. Serving picks a backend per model (ONNX Runtime by default;
PyTorch for debugging and explanations; Triton lives in serving/).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from models.card import ModelCard
from models.export import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME

log = logging.getLogger(__name__)

ONNX_FILENAME = "model.onnx"
TORCHSCRIPT_FILENAME = "model.pt"
STATE_DICT_FILENAME = "state_dict.pt"


@runtime_checkable
class InferenceBackend(Protocol):
    name: str    # "onnxruntime" / "torch" ...
    device: str  # "cpu" / "cuda" / "cuda:0"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """[B, ...] float32 preprocessed inputs → [B, L] float32 probabilities."""
        ...


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # Computed in float64: exp overflow for large negative logits is avoided and the float32
    # result matches torch.sigmoid to rounding.
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def _check_batch(batch: np.ndarray, expected: list[int | None] | None) -> np.ndarray:
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if expected is not None:
        if batch.ndim != len(expected):
            raise ValueError(f"expected input of rank {len(expected)} {expected}, got shape {batch.shape}")
        for axis, (got, want) in enumerate(zip(batch.shape, expected)):
            if want is not None and axis > 0 and got != want:
                raise ValueError(f"expected input shape {expected} (batch first), got {batch.shape}")
    return batch


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no usable torch means no CUDA for us
        return False


class OnnxRuntimeBackend:
    """ONNX Runtime session: CUDA execution provider first when a GPU is usable, else CPU."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None,
                 intra_op_threads: int | None = None, card: ModelCard | None = None):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        self.card = card
        available = ort.get_available_providers()
        if providers is None:
            # onnxruntime-gpu lists the CUDA provider even on machines without a GPU; asking for it
            # there only produces load errors, so offer it only when CUDA is actually usable.
            providers = ["CPUExecutionProvider"]
            if "CUDAExecutionProvider" in available and _cuda_available():
                providers.insert(0, "CUDAExecutionProvider")
        if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()  # the CUDA/cuDNN libraries that torch's wheels installed
            except Exception as exc:  # noqa: BLE001 - ORT falls back to its own search path
                log.debug("onnxruntime.preload_dlls failed: %s", exc)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1  # one conv net: parallelism is inside ops
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        options.log_severity_level = 3
        provider_list: list = []
        for provider in providers:
            if provider == "CUDAExecutionProvider":
                # Heuristic cuDNN algorithm choice: exhaustive search would re-run for every new
                # dynamic batch size that the serving batcher produces.
                provider_list.append((provider, {"cudnn_conv_algo_search": "HEURISTIC"}))
            else:
                provider_list.append(provider)
        self.session = ort.InferenceSession(str(self.path), options, providers=provider_list)
        active = self.session.get_providers()
        self.providers = active
        self.device = "cuda" if "CUDAExecutionProvider" in active else "cpu"
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = [d if isinstance(d, int) else None for d in model_input.shape]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = ONNX_OUTPUT_NAME if ONNX_OUTPUT_NAME in outputs else outputs[0]
        if self.input_name != ONNX_INPUT_NAME:
            log.debug("ONNX model %s has input %r", self.path, self.input_name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = _check_batch(batch, self.input_shape)
        logits = self.session.run([self.output_name], {self.input_name: batch})[0]
        return _sigmoid(logits)


class TorchBackend:
    """PyTorch: the TorchScript module (model.pt) if present, else the network rebuilt from the
    card's architecture + state_dict.pt. CUDA when available (or as ``device`` says)."""

    name = "torch"

    def __init__(self, model_dir: str | Path, device: str | None = None, prefer_torchscript: bool = True):
        import torch

        self.model_dir = Path(model_dir)
        self.card = ModelCard.load(self.model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        script_path = self.model_dir / TORCHSCRIPT_FILENAME
        state_path = self.model_dir / STATE_DICT_FILENAME
        if prefer_torchscript and script_path.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit deprecation notices
                self.module = torch.jit.load(str(script_path), map_location=self.device)
            self.source = TORCHSCRIPT_FILENAME
        elif state_path.is_file():
            self.module = build_network(self.card)
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            self.module.load_state_dict(state)
            self.module.to(self.device)
            self.source = STATE_DICT_FILENAME
        else:
            raise FileNotFoundError(f"{self.model_dir}: neither {TORCHSCRIPT_FILENAME} nor {STATE_DICT_FILENAME}")
        self.module.eval()
        self.input_shape = list(self.card.input.shape)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = _check_batch(batch, self.input_shape)
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(batch).to(self.device))
            return torch.sigmoid(logits.float()).cpu().numpy().astype(np.float32)


def build_network(card: ModelCard):
    """A fresh network for ``card`` (weights not loaded)."""
    if card.task == "ecg":
        from models.ecg.factory import build_ecg_model

        return build_ecg_model(card.architecture, len(card.labels), **card.architecture_params)
    if card.task == "cxr":
        from models.cxr.network import build_cxr_model

        return build_cxr_model(card.architecture, len(card.labels), **card.architecture_params)
    raise ValueError(f"no network builder for task {card.task!r}; register a TorchScript {TORCHSCRIPT_FILENAME}")


BACKEND_KINDS = {"onnxruntime": "onnxruntime", "onnx": "onnxruntime", "ort": "onnxruntime",
                 "torch": "torch", "pytorch": "torch", "torchscript": "torch"}


def load_backend(model_dir: str | Path, kind: str = "onnxruntime", **opts) -> InferenceBackend:
    """The backend ``kind`` for a model directory (a registry version dir or a staging dir).

    Options: onnxruntime → ``providers``, ``intra_op_threads``; torch → ``device``,
    ``prefer_torchscript``.
    """
    model_dir = Path(model_dir)
    resolved = BACKEND_KINDS.get(kind.lower())
    if resolved is None:
        raise ValueError(f"unknown backend kind {kind!r}; known: {', '.join(sorted(BACKEND_KINDS))}")
    if resolved == "onnxruntime":
        onnx_path = model_dir / ONNX_FILENAME
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path} not found")
        if "intra_op_threads" not in opts and os.environ.get("PREREAD_ORT_THREADS"):
            opts["intra_op_threads"] = int(os.environ["PREREAD_ORT_THREADS"])
        return OnnxRuntimeBackend(onnx_path, card=ModelCard.load(model_dir), **opts)
    # Options meant for ONNX Runtime do not apply to PyTorch; a config that names them stays valid.
    opts.pop("intra_op_threads", None)
    opts.pop("providers", None)
    return TorchBackend(model_dir, **opts)

"""Inference backends: one ``predict`` for a batch of preprocessed inputs, whatever runs it.

Every backend returns per-label probabilities (sigmoid of the logits), float32 [B, L], in the
label order of the model's card. Serving picks a backend per model (configs/serving.yaml): ONNX
Runtime by default (CUDA provider with IO binding on a GPU, tuned CPU threads otherwise), PyTorch
for debugging and explanations, or a Triton Inference Server (any KServe v2 server) reached with
tritonclient over HTTP or gRPC (models/triton_backend.py). The protocol they share, the batch check
and the sigmoid are models/inference.py.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.card import ModelCard
from models.inference import InferenceBackend, check_batch, sigmoid
from models.triton_backend import TRITON_OPTIONS, triton_for_model_dir

log = logging.getLogger(__name__)

ONNX_FILENAME = "model.onnx"
ONNX_INPUT_NAME = "input"  # the tensor names models/export.py writes and the ONNX backends read
ONNX_OUTPUT_NAME = "logits"
TORCHSCRIPT_FILENAME = "model.pt"
STATE_DICT_FILENAME = "state_dict.pt"


def _cuda_available() -> bool:
    try:
        import torch  # noqa: PLC0415 - heavy; an ONNX Runtime replica need not load torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no usable torch means no CUDA for us
        return False


PRECISIONS = ("fp32", "fp16")
NetworkBuilder = Callable[[ModelCard], Any]  # card → a fresh torch.nn.Module (models/networks.py)


def float16_model(onnx_path: str | Path):
    """The ONNX model with float16 weights and compute, float32 inputs and outputs (casts at the
    edges), for GPUs: half the memory traffic, tensor cores. Not for the CPU provider, which has
    no float16 kernels for most ops."""
    import onnx  # noqa: PLC0415 - heavy; loaded only for an fp16 graph
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415 - heavy; loaded only for an fp16 graph

    return convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)


def _usable_providers(ort, providers: list[str] | None) -> list[str]:
    """``providers``, else CUDA first when a GPU is usable and the CPU; the CUDA libraries that
    torch's wheels installed are preloaded when CUDA is asked for."""
    if providers is None:
        # onnxruntime-gpu lists the CUDA provider even on machines without a GPU; asking for it
        # there only produces load errors, so offer it only when CUDA is actually usable.
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_available():
            providers.insert(0, "CUDAExecutionProvider")
    if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # the CUDA/cuDNN libraries that torch's wheels installed
        except Exception as exc:  # noqa: BLE001 - ORT falls back to its own search path
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    return providers


def _session_options(ort, intra_op_threads: int | None, spin: bool):
    """Session options for one conv net: all graph optimisations, sequential execution, the
    intra-op thread count, no spin-waiting unless ``spin``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1  # one conv net: parallelism is inside ops
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    # ORT's threads spin-wait for work between runs by default. In a serving replica that CPU
    # is what the event loop needs to receive the next batch (and what a replica sharing the
    # node needs): measured here, 2.1 instead of 2.9 ms of CPU per ECG, and faster under load.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return options


class OnnxRuntimeBackend:
    """ONNX Runtime session: CUDA execution provider first when a GPU is usable, else CPU.

    On CUDA, ``predict`` uses IO binding: the batch is copied to the device once, the output is
    allocated there by ORT and copied back once, instead of ORT staging both through its own
    buffers on every call. ``precision="fp16"`` converts the graph to float16 on CUDA (on CPU it
    stays float32 and says so in the log).
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        card: ModelCard | None = None,
        precision: str = "fp32",
        device_id: int = 0,
        spin: bool = False,
    ):
        import onnxruntime as ort  # noqa: PLC0415 - heavy; loaded only when an ONNX Runtime backend is opened

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.path = Path(onnx_path)
        self.card = card
        self.device_id = int(device_id)
        providers = _usable_providers(ort, providers)
        options = _session_options(ort, intra_op_threads, spin)
        provider_list: list = []
        for provider in providers:
            if provider == "CUDAExecutionProvider":
                # Heuristic cuDNN algorithm choice: exhaustive search would re-run for every new
                # dynamic batch size that the serving batcher produces.
                provider_list.append((provider, {"cudnn_conv_algo_search": "HEURISTIC", "device_id": self.device_id}))
            else:
                provider_list.append(provider)
        model: str | bytes = str(self.path)
        on_cuda = "CUDAExecutionProvider" in providers
        if precision == "fp16" and on_cuda:
            model = float16_model(self.path).SerializeToString()
        elif precision == "fp16":
            log.warning("%s: fp16 needs the CUDA provider; running fp32 on the CPU", self.path)
        self.session = ort.InferenceSession(model, options, providers=provider_list)
        active = self.session.get_providers()
        self.providers = active
        self.device = "cuda" if "CUDAExecutionProvider" in active else "cpu"
        self.precision = precision if self.device == "cuda" else "fp32"
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = [d if isinstance(d, int) else None for d in model_input.shape]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = ONNX_OUTPUT_NAME if ONNX_OUTPUT_NAME in outputs else outputs[0]
        if self.input_name != ONNX_INPUT_NAME:
            log.debug("ONNX model %s has input %r", self.path, self.input_name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_shape)
        if self.device == "cuda":
            return sigmoid(self.run_bound(batch, "cuda"))
        logits = self.session.run([self.output_name], {self.input_name: batch})[0]
        return sigmoid(logits)

    def run_bound(self, batch: np.ndarray, device_type: str) -> np.ndarray:
        """Logits through IO binding with the input placed on ``device_type`` ("cuda" on GPUs;
        "cpu" runs the same code path on machines without one)."""
        import onnxruntime as ort  # noqa: PLC0415 - heavy; loaded only when an ONNX Runtime backend runs

        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(batch, device_type, self.device_id)
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TorchBackend:
    """PyTorch: the TorchScript module (model.pt) if present, else the network rebuilt from the
    card's architecture + state_dict.pt. CUDA when available (or as ``device`` says)."""

    name = "torch"

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        prefer_torchscript: bool = True,
        precision: str = "fp32",
        build_network: NetworkBuilder | None = None,
    ):
        import torch  # noqa: PLC0415 - heavy; an ONNX Runtime replica need not load torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
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
            if build_network is None:
                raise ValueError(
                    f"{self.model_dir}: rebuilding the network from {STATE_DICT_FILENAME} needs its "
                    "builder (build_network=..., e.g. models.networks.build_network)"
                )
            self.module = build_network(self.card)
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            self.module.load_state_dict(state)
            self.module.to(self.device)
            self.source = STATE_DICT_FILENAME
        else:
            raise FileNotFoundError(f"{self.model_dir}: neither {TORCHSCRIPT_FILENAME} nor {STATE_DICT_FILENAME}")
        self.module.eval()
        self.input_shape = list(self.card.input.shape)
        # float16 on a GPU only: CPU half-precision convolutions are slow or missing.
        self.precision = precision if str(self.device).startswith("cuda") else "fp32"
        if self.precision == "fp16":
            self.module.half()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch  # noqa: PLC0415 - heavy; an ONNX Runtime replica need not load torch

        batch = check_batch(batch, self.input_shape)
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
            logits = self.module(tensor.half() if self.precision == "fp16" else tensor)
            return torch.sigmoid(logits.float()).cpu().numpy().astype(np.float32)


BACKEND_KINDS = {
    "onnxruntime": "onnxruntime",
    "onnx": "onnxruntime",
    "ort": "onnxruntime",
    "torch": "torch",
    "pytorch": "torch",
    "torchscript": "torch",
    "triton": "triton",
}


def load_backend(model_dir: str | Path, kind: str = "onnxruntime", **opts) -> InferenceBackend:
    """The backend ``kind`` for a model directory (a registry version dir or a staging dir).

    Options: onnxruntime → ``providers``, ``intra_op_threads``, ``precision``; torch → ``device``,
    ``prefer_torchscript``, ``precision``; triton → ``url`` (required), ``model_name`` (default: the
    card's name), ``model_version`` (default: the directory's registry version), ``protocol``
    (http|grpc), ``timeout_s``, ``headers``. Options of other kinds are ignored, so one config
    entry can switch backends.
    """
    model_dir = Path(model_dir)
    resolved = BACKEND_KINDS.get(kind.lower())
    if resolved is None:
        raise ValueError(f"unknown backend kind {kind!r}; known: {', '.join(sorted(BACKEND_KINDS))}")
    if resolved == "triton":
        return triton_for_model_dir(model_dir, opts)
    for key in TRITON_OPTIONS:
        opts.pop(key, None)
    build_network = opts.pop("build_network", None)
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
    opts.pop("device_id", None)
    return TorchBackend(model_dir, build_network=build_network, **opts)

"""A Triton model repository written from preread's registry.

    <root>/<name>/config.pbtxt
    <root>/<name>/<registry version>/model.onnx      (the registered export, copied)
    <root>/<name>/<registry version>/model.py        (Python backend only: serving/replica/triton/python_model.py)

Two flavours of the same model:

- ``python`` (default; what runs with the tritonserver of the nvidia-pytriton wheel, which ships
  only the Python backend): Triton batches, the Python model runs the ONNX file with preread's
  OnnxRuntimeBackend (CPU threads, or CUDA + IO binding on a GPU instance) and answers
  ``probabilities``.
- ``onnxruntime`` (a full Triton container, e.g. nvcr.io/nvidia/tritonserver on a GPU node):
  Triton's own ONNX Runtime backend, no Python; it answers ``logits`` (TritonBackend applies the
  sigmoid).

Batching comes from the model's ``deployments.<model>`` entry in configs/serving.yaml (one source
of truth for both serving paths): ``max_batch_size``, ``batch_wait_timeout_s`` → the dynamic
batcher's max queue delay, ``preferred_batch_sizes``. Priorities (``priority_levels``: 1 critical,
2 urgent, 3 routine = the default, the levels preread's own batcher uses) are opt-in: with them,
Triton 2.51's dynamic batcher stalled ~0.5 s whenever four or more requests were queued on this
machine (e.g. 790 → 225 images/s at 4 concurrent requests; docs/serving.md).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.registry import Registry, open_registry

PYTHON_MODEL = Path(__file__).with_name("python_model.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRIORITY_LEVELS = 3  # critical, urgent, routine (serving.priority.LEVELS)

TritonFlavour = Literal["python", "onnxruntime"]


@dataclass
class TritonModelOptions:
    """How Triton serves one model."""

    max_batch_size: int = 32
    max_queue_delay_us: int = 10_000
    preferred_batch_sizes: list[int] = field(default_factory=list)
    instances: int = 1
    gpu: bool = False
    intra_op_threads: int | None = None
    precision: Literal["fp32", "fp16"] = "fp32"
    flavour: TritonFlavour = "python"
    priority_levels: bool = False

    def __post_init__(self):
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        bad = [size for size in self.preferred_batch_sizes if not 1 <= size <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred_batch_sizes {bad} must lie in 1..max_batch_size ({self.max_batch_size})")
        if self.flavour not in ("python", "onnxruntime"):
            raise ValueError(f"flavour must be 'python' or 'onnxruntime', got {self.flavour!r}")

    @classmethod
    def from_deployment(cls, deployment, model=None, **overrides) -> TritonModelOptions:
        """From a serving config's DeploymentConfig (and ModelServingConfig for threads/precision)."""
        options = {
            "max_batch_size": deployment.max_batch_size,
            "max_queue_delay_us": int(round(deployment.batch_wait_timeout_s * 1e6)),
            "preferred_batch_sizes": list(deployment.preferred_batch_sizes),
            "instances": deployment.num_replicas
            if isinstance(deployment.num_replicas, int)
            else deployment.max_replicas,
            "gpu": deployment.num_gpus > 0,
        }
        if model is not None:
            options.update(intra_op_threads=model.intra_op_threads, precision=model.precision)
        options.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**options)


def config_pbtxt(name: str, version: int, input_shape: list[int], n_outputs: int, options: TritonModelOptions) -> str:
    """config.pbtxt text for one model (protobuf text format)."""
    dims = ", ".join(str(int(d)) for d in input_shape)
    python = options.flavour == "python"
    output = "probabilities" if python else "logits"
    lines = [
        f'name: "{name}"',
        'backend: "python"' if python else 'platform: "onnxruntime_onnx"',
        f"max_batch_size: {options.max_batch_size}",
        f'input [ {{ name: "input" data_type: TYPE_FP32 dims: [ {dims} ] }} ]',
        f'output [ {{ name: "{output}" data_type: TYPE_FP32 dims: [ {n_outputs} ] }} ]',
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
    ]
    batcher = [f"max_queue_delay_microseconds: {options.max_queue_delay_us}"]
    if options.priority_levels:
        batcher += [f"priority_levels: {PRIORITY_LEVELS}", f"default_priority_level: {PRIORITY_LEVELS}"]
    if options.preferred_batch_sizes:
        batcher.insert(0, f"preferred_batch_size: [ {', '.join(map(str, sorted(options.preferred_batch_sizes)))} ]")
    lines.append("dynamic_batching { " + " ".join(batcher) + " }")
    kind = "KIND_GPU" if options.gpu else "KIND_CPU"
    lines.append(f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]")
    params: dict[str, str] = {}
    if python:
        params = {
            "project_root": str(PROJECT_ROOT),
            "precision": options.precision,
            "intra_op_threads": str(options.intra_op_threads or 0),
        }
    elif options.intra_op_threads:
        params = {"intra_op_thread_count": str(options.intra_op_threads)}  # Triton's ORT backend
    if not python and options.gpu and options.precision == "fp16":
        lines.append(
            'optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
            'parameters { key: "precision_mode" value: "FP16" } } ] } }'
        )
    for key, value in params.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def write_model(
    root: str | Path, registry: Registry | str | Path, ref: str, options: TritonModelOptions, name: str | None = None
) -> Path:
    """Write (or replace) one registered model into the repository at ``root``; returns its folder.
    The Triton version is the registry version, so ``/v2/models/ecg/versions/3`` means ecg/3
    everywhere."""
    registered = open_registry(registry).resolve(ref)
    card = registered.card
    name = name or card.name
    if not registered.onnx_path.is_file():
        raise FileNotFoundError(
            f"{registered.ref} has no ONNX export ({registered.onnx_path}); "
            f"export it first: preread models export {registered.ref}"
        )
    shape = list(card.input.shape)[1:]
    if any(d is None for d in shape):
        raise ValueError(
            f"{registered.ref}: Triton needs fixed input dims after the batch axis, card says {card.input.shape}"
        )
    model_dir = Path(root) / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    version_dir = model_dir / str(registered.version)
    version_dir.mkdir(parents=True)
    shutil.copy2(registered.onnx_path, version_dir / "model.onnx")
    if options.flavour == "python":
        shutil.copy2(PYTHON_MODEL, version_dir / "model.py")
    (model_dir / "config.pbtxt").write_text(
        config_pbtxt(name, int(registered.version), shape, len(card.labels), options), encoding="utf-8"
    )
    return model_dir


def write_repository(
    root: str | Path, cfg, models: list[str] | None = None, flavour: TritonFlavour = "python", **overrides
) -> dict[str, Path]:
    """A repository with the serving config's models (default: all of ``cfg.models``), each with
    the batching of its ``deployments`` entry. ``overrides`` go to TritonModelOptions."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    registry = cfg.registry.open()
    for name in models or list(cfg.models):
        if name not in cfg.models:
            raise KeyError(f"model {name!r} is not in the serving config (models: {', '.join(cfg.models)})")
        options = TritonModelOptions.from_deployment(
            getattr(cfg.deployments, name), cfg.models[name], flavour=flavour, **overrides
        )
        written[name] = write_model(root, registry, cfg.models[name].ref, options, name=name)
    return written

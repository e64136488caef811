"""The serving config's model sections: where registered models come from (the registry), how each is run
(backend, precision, Triton endpoint, reload) and how its Ray Serve deployment is sized and batched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from models.registry import (
    DEFAULT_REGISTRY_URI,
    TRACKING_URI_ENV,
    Registry,
    absolute_location,
    open_registry,
    registry_kind,
)
from serving.config_base import StrictSection


class RegistryConfig(StrictSection):
    """Where registered models live (see models/registry.py).

    ``uri``: an MLflow store — ``sqlite:///var/mlflow/mlflow.db`` (the default: a local SQLite
    store with artifacts in var/mlflow/artifacts), ``http(s)://host:5000`` (a tracking server),
    ``postgresql://…``, ``databricks`` — or a folder (the file registry). None: $MLFLOW_TRACKING_URI
    if set, else the local default. ``root: FOLDER`` (older configs) means ``uri: FOLDER``."""

    uri: str | None = None
    cache_dir: Path | None = Field(
        None, description="local copies of MLflow versions; None: beside a SQLite store, else ~/.cache/preread/mlflow"
    )
    artifact_root: str | None = Field(
        None,
        description="where runs created through a database store keep "
        "artifacts (a shared folder, s3://…); None: beside a SQLite store",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_root(cls, data):
        if isinstance(data, dict) and "root" in data:
            data = dict(data)
            root = data.pop("root")
            if data.get("uri") not in (None, str(root)):
                raise ValueError("give either registry.uri or the older registry.root, not both")
            data["uri"] = str(root)
        return data

    @field_validator("uri")
    @classmethod
    def _known_location(cls, value: str | None) -> str | None:
        if value is not None:
            registry_kind(value)  # ValueError says what to write instead
        return value

    @model_validator(mode="after")
    def _artifacts_for_databases(self) -> RegistryConfig:
        if (
            self.uri
            and self.artifact_root is None
            and registry_kind(self.uri) == "mlflow"
            and self.uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql", "mssql")
        ):
            raise ValueError(
                "registry.artifact_root is required with a database registry URI "
                "(a folder every node can read, or s3://…); or use an MLflow server URL"
            )
        return self

    def resolved(self, base: Path) -> RegistryConfig:
        """Absolute: the URI ($MLFLOW_TRACKING_URI or the default filled in), a SQLite file or a
        folder, the cache — so Ray replicas, whose working directory differs, find the same store."""
        uri = absolute_location(self.uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_REGISTRY_URI, base)
        cache_dir = self.cache_dir if self.cache_dir is None or self.cache_dir.is_absolute() else base / self.cache_dir
        artifact_root = self.artifact_root
        if artifact_root and "://" not in artifact_root and not Path(artifact_root).is_absolute():
            artifact_root = str(base / artifact_root)
        return RegistryConfig(uri=uri, cache_dir=cache_dir, artifact_root=artifact_root)

    def open(self) -> Registry:
        """The registry (nothing is contacted until it is used; ``check()`` to fail fast)."""
        return open_registry(self.uri, cache_dir=self.cache_dir, artifact_root=self.artifact_root)


class TritonEndpointConfig(StrictSection):
    """Where a model is served by Triton (``backend: triton``): any KServe v2 server works."""

    url: str  # host:port (HTTP port for http, gRPC port for grpc)
    protocol: Literal["http", "grpc"] = "grpc"
    model_name: str | None = None  # default: the registry model's name
    # default: the registry version being served, so the card (labels, thresholds) always
    # belongs to the network that answers; set it to read another version on purpose.
    model_version: str | None = None
    timeout_s: float = Field(30.0, gt=0)


class ModelServingConfig(StrictSection):
    ref: str  # registry reference: NAME, NAME@ALIAS or NAME/VERSION
    # onnxruntime: CUDA provider (IO binding) where a GPU is usable, else CPU; pytorch; or triton.
    backend: Literal["onnxruntime", "pytorch", "triton"] = "onnxruntime"
    intra_op_threads: int | None = Field(None, ge=1)  # ONNX Runtime CPU threads; None = all cores
    precision: Literal["fp32", "fp16"] = "fp32"  # fp16 applies on GPUs only
    triton: TritonEndpointConfig | None = None
    # How often replicas check whether the alias in `ref` moved (a promotion); 0 turns it off.
    reload_interval_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _triton_needs_a_server(self) -> ModelServingConfig:
        if self.backend == "triton" and self.triton is None:
            raise ValueError("backend 'triton' needs a triton section (url, protocol) naming the server")
        return self

    def backend_options(self) -> dict:
        """Keyword options for models.backends.load_backend."""
        options: dict = {"intra_op_threads": self.intra_op_threads, "precision": self.precision}
        if self.backend == "triton":
            options = self.triton.model_dump(exclude_none=True)
        return options


class DeploymentConfig(StrictSection):
    num_replicas: int | Literal["auto"] = 1
    num_cpus: float = Field(0.5, ge=0)
    # A fraction (0.25: four replicas share a GPU) or a whole number of GPUs per replica.
    num_gpus: float = Field(0.0, ge=0)
    # Custom Ray resources each replica needs, e.g. {"gpu_node": 0.01} to pin replicas to nodes
    # started with `ray start --resources '{"gpu_node": 1}'`.
    resources: dict[str, float] = {}
    max_ongoing_requests: int = Field(64, ge=1)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    # Batch sizes Triton's dynamic batcher prefers (serving.replica.triton); empty = as large as it can.
    preferred_batch_sizes: list[int] = []
    # Waiting this long promotes queued work one priority level (routine → urgent → critical).
    priority_aging_s: float = Field(5.0, gt=0)
    # Autoscaling (num_replicas: auto): bounds and queued-plus-running requests per replica
    # that Ray Serve aims at (default: half a batch, so batches fill before a replica is added).
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float | None = Field(None, gt=0)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(120.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentConfig:
        # A replica that admits fewer requests than its batch size can never fill a batch.
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be ≥ max_batch_size ({self.max_batch_size})"
            )
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ValueError(f"num_gpus ({self.num_gpus}) must be a fraction ≤ 1 or a whole number of GPUs")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be ≤ max_replicas ({self.max_replicas})")
        bad = [size for size in self.preferred_batch_sizes if not 1 <= size <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred_batch_sizes {bad} must lie in 1..max_batch_size ({self.max_batch_size})")
        return self

    def autoscaling(self, batching: bool) -> dict | None:
        """Ray Serve's autoscaling_config, or None for a fixed replica count."""
        if self.num_replicas != "auto":
            return None
        target = self.target_ongoing_requests or (max(2, self.max_batch_size // 2) if batching else 2)
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": target,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }


class DeploymentsConfig(StrictSection):
    ingress: DeploymentConfig = DeploymentConfig(max_batch_size=1, max_ongoing_requests=128)
    ecg: DeploymentConfig = DeploymentConfig()
    cxr: DeploymentConfig = DeploymentConfig(max_batch_size=8, max_ongoing_requests=16)
    # "haproxy": Ray Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY; requests go straight to
    # the ingress replicas, ~3x the requests/s of Ray's Python proxy here); applied by
    # `preread serve` before Ray starts. On a cluster, set the variable on `ray start` instead.
    http_proxy: Literal["ray", "haproxy"] = "ray"

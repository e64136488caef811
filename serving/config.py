"""The serving configuration: configs/serving.yaml, validated by pydantic on load.

Relative paths for state (database, objects, registry, secret) are taken from the working directory,
so `preread serve` keeps everything under ./var/; relative paths to other config files (triage rules)
are taken from the config file's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class DicomDestination(_Strict):
    """A PACS our result objects (SR, heatmap SC) are C-STOREd to after each read."""

    ae_title: str
    host: str
    port: int = Field(104, ge=1, le=65535)
    timeout_s: float = Field(30.0, gt=0)


class DicomConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=1, le=65535)
    ae_title: str = "PREREAD"
    # A study is routed once no instance has arrived for this long (series come one by one).
    study_stable_seconds: float = Field(2.0, ge=0)
    lease_seconds: float = Field(300.0, gt=0)        # a claim older than this is retried
    poll_seconds: float = Field(0.5, gt=0)
    routing: Path = Path("routing.yaml")             # relative to the config folder
    results_destination: DicomDestination | None = None
    max_instance_bytes: int = Field(512 * 1024 * 1024, ge=1024)   # one object (C-STORE or STOW part)
    max_stow_bytes: int = Field(1024 * 1024 * 1024, ge=1024)      # one STOW-RS request body


class SiteConfig(_Strict):
    id: str
    name: str = ""
    ae_titles: list[str] = []


class StorageConfig(_Strict):
    root: Path = Path("var/objects")


class DatabaseConfig(_Strict):
    url: str = "sqlite:///var/preread.db"


class RegistryConfig(_Strict):
    root: Path = Path("var/registry")


class BootstrapUser(_Strict):
    """A user created at start if missing. Password from $``password_env``; if unset, a random one is
    generated and logged once (only its argon2 hash is stored)."""

    username: str
    role: Literal["grassroots", "reader", "datasci", "admin"]
    sites: list[str] = []
    display_name: str | None = None
    password_env: str | None = None


class AuthConfig(_Strict):
    # The secret that signs tokens: $PREREAD_SECRET if set, else this file (created 0600 on first use).
    secret_file: Path = Path("var/secret.key")
    token_ttl_hours: float = Field(12.0, gt=0)
    # Web logins (POST /api/v1/login) get tokens with this lifetime.
    login_ttl_hours: float = Field(8.0, gt=0)
    users: list[BootstrapUser] = [
        BootstrapUser(username="demo-reader", role="reader", sites=["demo"], display_name="Demo county reader",
                      password_env="PREREAD_DEMO_READER_PASSWORD"),
        BootstrapUser(username="demo-clinic", role="grassroots", sites=["demo"], display_name="Demo village clinic",
                      password_env="PREREAD_DEMO_CLINIC_PASSWORD"),
        BootstrapUser(username="demo-admin", role="admin", sites=["*"], display_name="Demo administrator",
                      password_env="PREREAD_DEMO_ADMIN_PASSWORD"),
    ]


class PrivacyConfig(_Strict):
    mask_patient_names: bool = True
    mask_patient_ids: bool = True


class TritonEndpointConfig(_Strict):
    """Where a model is served by Triton (``backend: triton``): any KServe v2 server works."""

    url: str                                   # host:port (HTTP port for http, gRPC port for grpc)
    protocol: Literal["http", "grpc"] = "grpc"
    model_name: str | None = None              # default: the registry model's name
    # default: the registry version being served, so the card (labels, thresholds) always
    # belongs to the network that answers; set it to read another version on purpose.
    model_version: str | None = None
    timeout_s: float = Field(30.0, gt=0)


class ModelServingConfig(_Strict):
    ref: str  # registry reference: NAME, NAME@ALIAS or NAME/VERSION
    # onnxruntime: CUDA provider (IO binding) where a GPU is usable, else CPU; pytorch; or triton.
    backend: Literal["onnxruntime", "pytorch", "triton"] = "onnxruntime"
    intra_op_threads: int | None = Field(None, ge=1)   # ONNX Runtime CPU threads; None = all cores
    precision: Literal["fp32", "fp16"] = "fp32"        # fp16 applies on GPUs only
    triton: TritonEndpointConfig | None = None
    # How often replicas check whether the alias in `ref` moved (a promotion); 0 turns it off.
    reload_interval_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _triton_needs_a_server(self) -> "ModelServingConfig":
        if self.backend == "triton" and self.triton is None:
            raise ValueError("backend 'triton' needs a triton section (url, protocol) naming the server")
        return self

    def backend_options(self) -> dict:
        """Keyword options for models.backends.load_backend."""
        options: dict = {"intra_op_threads": self.intra_op_threads, "precision": self.precision}
        if self.backend == "triton":
            options = self.triton.model_dump(exclude_none=True)
        return options


class DeploymentConfig(_Strict):
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
    # Batch sizes Triton's dynamic batcher prefers (serving.triton); empty = as large as it can.
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
    def _consistent(self) -> "DeploymentConfig":
        # A replica that admits fewer requests than its batch size can never fill a batch.
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be ≥ max_batch_size "
                             f"({self.max_batch_size})")
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
        return {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": target, "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s}


class DeploymentsConfig(_Strict):
    ingress: DeploymentConfig = DeploymentConfig(max_batch_size=1, max_ongoing_requests=128)
    ecg: DeploymentConfig = DeploymentConfig()
    cxr: DeploymentConfig = DeploymentConfig(max_batch_size=8, max_ongoing_requests=16)
    # "haproxy": Ray Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY; requests go straight to
    # the ingress replicas, ~3x the requests/s of Ray's Python proxy here); applied by
    # `preread serve` before Ray starts. On a cluster, set the variable on `ray start` instead.
    http_proxy: Literal["ray", "haproxy"] = "ray"


class WorklistConfig(_Strict):
    # Minutes a study may wait at a level before it is escalated one level (critical: flagged overdue).
    aging_minutes: dict[Literal["critical", "urgent", "routine"], float] = {
        "critical": 15, "urgent": 60, "routine": 240,
    }
    # A reader's claim on a study expires after this many minutes unless renewed (claimed again).
    claim_minutes: float = Field(20.0, gt=0)
    # How often the web page refreshes the worklist.
    poll_seconds: float = Field(5.0, gt=0)


class LimitsConfig(_Strict):
    max_ecg_bytes: int = 20 * 1024 * 1024


class TriageConfig(_Strict):
    ecg: Path = Path("triage/ecg.yaml")
    cxr: Path = Path("triage/cxr.yaml")


class ServingConfig(_Strict):
    http: HttpConfig = HttpConfig()
    dicom: DicomConfig = DicomConfig()
    sites: list[SiteConfig] = [SiteConfig(id="demo", name="Demo township health centre", ae_titles=["DEMOSITE"])]
    storage: StorageConfig = StorageConfig()
    database: DatabaseConfig = DatabaseConfig()
    registry: RegistryConfig = RegistryConfig()
    auth: AuthConfig = AuthConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    models: dict[str, ModelServingConfig] = {"ecg": ModelServingConfig(ref="ecg@champion")}
    deployments: DeploymentsConfig = DeploymentsConfig()
    triage: TriageConfig = TriageConfig()
    worklist: WorklistConfig = WorklistConfig()
    limits: LimitsConfig = LimitsConfig()
    ray_num_cpus: float | None = None  # local Ray only; None = the machine's cores

    config_dir: Path = REPO_CONFIGS  # where relative config references resolve; set by load_config

    def site_ids(self) -> set[str]:
        return {site.id for site in self.sites}

    def resolved(self, base: str | Path | None = None) -> "ServingConfig":
        """A copy with state paths made absolute against ``base`` (default: the working directory).
        Ray replicas need this: their working directory is not the driver's."""
        base = Path(base or Path.cwd()).resolve()

        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{absolute(Path(url.removeprefix('sqlite:///')))}"
        return self.model_copy(update={
            "storage": StorageConfig(root=absolute(self.storage.root)),
            "database": DatabaseConfig(url=url),
            "registry": RegistryConfig(root=absolute(self.registry.root)),
            "auth": self.auth.model_copy(update={"secret_file": absolute(self.auth.secret_file)}),
            "config_dir": self.config_dir.resolve(),
        })

    def routing_path(self) -> Path:
        path = self.dicom.routing
        return path if path.is_absolute() else self.config_dir / path

    def triage_path(self, modality: str) -> Path:
        path = getattr(self.triage, modality)
        return path if path.is_absolute() else self.config_dir / path


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> ServingConfig:
    """Load and validate a serving config. ``None`` → $PREREAD_CONFIG, else configs/serving.yaml."""
    path = Path(path or os.environ.get("PREREAD_CONFIG") or REPO_CONFIGS / "serving.yaml")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    data.update(overrides or {})
    data.setdefault("config_dir", str(path.resolve().parent))
    return ServingConfig.model_validate(data)

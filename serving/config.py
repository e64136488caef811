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
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datasets.vocabulary import TriageLevel, i18n
from models.registry import (
    DEFAULT_REGISTRY_URI,
    TRACKING_URI_ENV,
    Registry,
    absolute_location,
    open_registry,
    registry_kind,
)

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
    # Associations calling another AE title than ``ae_title`` are rejected (A-ASSOCIATE-RJ, reason 7):
    # a modality set up for another node must not send us its patients. False accepts any called AE.
    check_called_ae: bool = True
    # A study is routed once no instance has arrived for this long (series come one by one).
    study_stable_seconds: float = Field(2.0, ge=0)
    # A worker renews its lease on a study every lease/3 s while it reads; a lease not renewed for
    # this long is stale (its replica or the whole service died) and the study is taken over.
    lease_seconds: float = Field(60.0, gt=0)
    poll_seconds: float = Field(0.5, gt=0)
    # Studies one ingress replica reads at once (enough for the model deployments to fill batches);
    # a new one starts whenever one finishes.
    max_in_flight: int = Field(16, ge=1)
    routing: Path = Path("routing.yaml")  # relative to the config folder
    results_destination: DicomDestination | None = None
    max_instance_bytes: int = Field(512 * 1024 * 1024, ge=1024)  # one object (C-STORE or STOW part)
    max_stow_bytes: int = Field(1024 * 1024 * 1024, ge=1024)  # one STOW-RS request body


class SiteConfig(_Strict):
    id: str
    name: str = ""
    ae_titles: list[str] = []


class StorageConfig(_Strict):
    root: Path = Path("var/objects")


class DatabaseConfig(_Strict):
    url: str = "sqlite:///var/preread.db"


class RegistryConfig(_Strict):
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


class BootstrapUser(_Strict):
    """A user created at start if missing. Password from $``password_env``; if unset, a random one is
    generated and logged once (only its argon2 hash is stored)."""

    username: str
    role: Literal["grassroots", "reader", "datasci", "admin"]
    sites: list[str] = []
    display_name: str | None = None
    password_env: str | None = None


class LoginThrottleConfig(_Strict):
    """Failed logins (audited as ``login_failed``) counted per account and per client address over
    ``window_seconds``: at the limit, that account or address is locked for ``lockout_seconds`` after its
    last failure (429 with Retry-After, audited as ``login_locked``; even the right password waits)."""

    enabled: bool = True
    max_failures_per_account: int = Field(5, ge=1)
    max_failures_per_client: int = Field(20, ge=1)
    window_seconds: float = Field(900.0, gt=0)
    lockout_seconds: float = Field(900.0, gt=0)


class AuthConfig(_Strict):
    # The secret that signs tokens: $PREREAD_SECRET if set, else this file (created 0600 on first use).
    secret_file: Path = Path("var/secret.key")
    token_ttl_hours: float = Field(12.0, gt=0)
    # Web logins (POST /api/v1/login) get tokens with this lifetime.
    login_ttl_hours: float = Field(8.0, gt=0)
    login_throttle: LoginThrottleConfig = LoginThrottleConfig()
    users: list[BootstrapUser] = [
        BootstrapUser(
            username="demo-reader",
            role="reader",
            sites=["demo"],
            display_name="Demo county reader",
            password_env="PREREAD_DEMO_READER_PASSWORD",
        ),
        BootstrapUser(
            username="demo-clinic",
            role="grassroots",
            sites=["demo"],
            display_name="Demo village clinic",
            password_env="PREREAD_DEMO_CLINIC_PASSWORD",
        ),
        BootstrapUser(
            username="demo-admin",
            role="admin",
            sites=["*"],
            display_name="Demo administrator",
            password_env="PREREAD_DEMO_ADMIN_PASSWORD",
        ),
    ]


class PrivacyConfig(_Strict):
    mask_patient_names: bool = True
    mask_patient_ids: bool = True


class PriorsConfig(_Strict):
    """Comparison with the patient's prior study (serving/reading/priors.py)."""

    enabled: bool = True
    # Who counts as the same patient: patient ID + issuer of patient ID (a missing issuer is the
    # sending site's own register), or the site's rule, e.g. [patient_id, name, birth_date].
    identity: list[Literal["patient_id", "issuer", "name", "birth_date", "sex"]] = ["patient_id", "issuer"]

    @field_validator("identity")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("priors.identity needs at least one field (patient_id, issuer, name, birth_date, sex)")
        return value


class TritonEndpointConfig(_Strict):
    """Where a model is served by Triton (``backend: triton``): any KServe v2 server works."""

    url: str  # host:port (HTTP port for http, gRPC port for grpc)
    protocol: Literal["http", "grpc"] = "grpc"
    model_name: str | None = None  # default: the registry model's name
    # default: the registry version being served, so the card (labels, thresholds) always
    # belongs to the network that answers; set it to read another version on purpose.
    model_version: str | None = None
    timeout_s: float = Field(30.0, gt=0)


class ModelServingConfig(_Strict):
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
    aging_minutes: dict[TriageLevel, float] = {
        TriageLevel.CRITICAL: 15,
        TriageLevel.URGENT: 60,
        TriageLevel.ROUTINE: 240,
    }
    # A reader's claim on a study expires after this many minutes unless renewed (claimed again).
    claim_minutes: float = Field(20.0, gt=0)
    # How often the web page refreshes the worklist.
    poll_seconds: float = Field(5.0, gt=0)


class LimitsConfig(_Strict):
    """What one request may make the service hold or allocate (serving/ingest/validate.py)."""

    max_ecg_bytes: int = 20 * 1024 * 1024
    # A resting ECG is 10 s; longer than this is a Holter or stress recording, not for this service.
    max_ecg_seconds: float = Field(60.0, gt=0)
    # What decoding one image's Pixel Data may allocate (rows x columns x samples x frames x bits / 8).
    max_decoded_bytes: int = Field(1024 * 1024 * 1024, gt=0)
    # Request bodies above this are spooled to a temporary file instead of held in memory.
    spool_in_memory_bytes: int = Field(1024 * 1024, gt=0)


class RecoveryConfig(_Strict):
    """Retries of failed AI reads (serving/store/work.py): exponential backoff, then listed as
    ai_failed for a doctor with no further automatic attempt."""

    max_attempts: int = Field(5, ge=1)
    backoff_base_seconds: float = Field(5.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)


class RateBucket(_Strict):
    """A token bucket: ``per_second`` sustained, up to ``burst`` at once."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class SiteRateLimits(_Strict):
    http: RateBucket | None = None
    dicom: RateBucket | None = None


class RateLimitConfig(_Strict):
    """Per-site ingest rate limits (serving/ingest/ratelimit.py), per ingress replica. Over the limit: HTTP
    429 with Retry-After; C-STORE 0xA700 (out of resources) with the wait in the Error Comment."""

    enabled: bool = True
    http: RateBucket = RateBucket(per_second=5, burst=100)  # ECG uploads + STOW-RS requests
    dicom: RateBucket = RateBucket(per_second=50, burst=1000)  # C-STORE instances
    sites: dict[str, SiteRateLimits] = {}  # per-site overrides by site id


class HttpTlsConfig(_Strict):
    """HTTPS on the Ray Serve proxy (uvicorn's TLS). Client certificates are optional."""

    certfile: Path
    keyfile: Path
    keyfile_password_env: str | None = None  # name of the variable holding the key's password
    ca_file: Path | None = None  # CA bundle for client certificates


class DicomTlsConfig(_Strict):
    """A DICOM TLS SCP (PS3.15 Annex B, BCP 195) beside or instead of the plain one."""

    port: int = Field(2762, ge=1, le=65535)
    certfile: Path
    keyfile: Path
    ca_file: Path | None = None  # CA bundle that signs the sites' client certificates
    require_client_cert: bool = True  # mutual TLS: a site proves who it is
    plain_too: bool = True  # keep the plain SCP on dicom.port as well
    # A client certificate must name the calling AE title (subject CN or a DNS subjectAltName, case
    # ignored), so one site's certificate cannot send as another site. Where a site's certificate
    # carries another name (a hostname from the county's CA), map the AE title to the names allowed.
    certificate_names: dict[str, list[str]] = {}


class TlsConfig(_Strict):
    http: HttpTlsConfig | None = None
    dicom: DicomTlsConfig | None = None


class AuditConfig(_Strict):
    # Repeated identical worklist views by one user (the page polls every few seconds) are written
    # to the trail as one aggregated event per window, with their count and time span.
    view_window_seconds: float = Field(300.0, ge=0)


class DeidConfig(_Strict):
    """De-identified training exports (serving/results/deid.py, PS3.15 Annex E Basic Profile)."""

    # The re-identification keys (pseudonym ↔ original identifiers, date offsets): kept apart from
    # the worklist database and from every export, readable by the service account only.
    key_store: Path = Path("var/reid/keys.db")
    dates: Literal["shift", "remove"] = "shift"  # Retain Longitudinal Temporal Information (modified dates)
    max_date_shift_days: int = Field(365, ge=1)


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
    # The language of the page, the reports and the read's words (codes never change with it): a BCP 47
    # tag with a catalog under datasets/vocabulary/locales/ (zh-CN, en).
    locale: str = "zh-CN"
    priors: PriorsConfig = PriorsConfig()
    models: dict[str, ModelServingConfig] = {"ecg": ModelServingConfig(ref="ecg@champion")}
    deployments: DeploymentsConfig = DeploymentsConfig()
    triage: TriageConfig = TriageConfig()
    worklist: WorklistConfig = WorklistConfig()
    limits: LimitsConfig = LimitsConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    tls: TlsConfig = TlsConfig()
    audit: AuditConfig = AuditConfig()
    deid: DeidConfig = DeidConfig()
    ray_num_cpus: float | None = None  # local Ray only; None = the machine's cores

    config_dir: Path = REPO_CONFIGS  # where relative config references resolve; set by load_config

    def site_ids(self) -> set[str]:
        return {site.id for site in self.sites}

    @field_validator("locale")
    @classmethod
    def _locale_has_a_catalog(cls, value: str) -> str:
        try:
            return i18n.bcp47(i18n.normalize_locale(value))
        except i18n.UnknownLocale as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("rate_limits")
    @classmethod
    def _rate_limit_sites_exist(cls, value: RateLimitConfig, info) -> RateLimitConfig:
        sites = {site.id for site in info.data.get("sites") or []}
        unknown = sorted(set(value.sites) - sites)
        if sites and unknown:
            raise ValueError(f"rate_limits.sites names unknown sites {unknown}; configured: {sorted(sites)}")
        return value

    @field_validator("tls")
    @classmethod
    def _certificate_names_are_site_aes(cls, value: TlsConfig, info) -> TlsConfig:
        aes = {ae.strip() for site in info.data.get("sites") or [] for ae in site.ae_titles}
        unknown = sorted(set(value.dicom.certificate_names) - aes) if value.dicom is not None else []
        if aes and unknown:
            raise ValueError(
                f"tls.dicom.certificate_names names unknown AE titles {unknown}; the sites' AE titles: {sorted(aes)}"
            )
        return value

    def resolved(self, base: str | Path | None = None) -> ServingConfig:
        """A copy with state paths made absolute against ``base`` (default: the working directory).
        Ray replicas need this: their working directory is not the driver's."""
        base = Path(base or Path.cwd()).resolve()

        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        def absolute_files(section):
            if section is None:
                return None
            return section.model_copy(
                update={
                    key: absolute(getattr(section, key))
                    for key in ("certfile", "keyfile", "ca_file")
                    if getattr(section, key)
                }
            )

        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{absolute(Path(url.removeprefix('sqlite:///')))}"
        return self.model_copy(
            update={
                "storage": StorageConfig(root=absolute(self.storage.root)),
                "database": DatabaseConfig(url=url),
                "registry": self.registry.resolved(base),
                "auth": self.auth.model_copy(update={"secret_file": absolute(self.auth.secret_file)}),
                "deid": self.deid.model_copy(update={"key_store": absolute(self.deid.key_store)}),
                "tls": TlsConfig(http=absolute_files(self.tls.http), dicom=absolute_files(self.tls.dicom)),
                "config_dir": self.config_dir.resolve(),
            }
        )

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

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
from pydantic import Field, field_validator

from datasets.vocabulary import TriageLevel, i18n
from serving.config_access import AuditConfig, AuthConfig, DeidConfig, PrivacyConfig, RateLimitConfig, TlsConfig
from serving.config_base import StrictSection
from serving.config_inference import DeploymentsConfig, ModelServingConfig, RegistryConfig

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class HttpConfig(StrictSection):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class DicomDestination(StrictSection):
    """A PACS our result objects (SR, heatmap SC) are C-STOREd to after each read."""

    ae_title: str
    host: str
    port: int = Field(104, ge=1, le=65535)
    timeout_s: float = Field(30.0, gt=0)


class DicomConfig(StrictSection):
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


class SiteConfig(StrictSection):
    id: str
    name: str = ""
    ae_titles: list[str] = []


class StorageConfig(StrictSection):
    root: Path = Path("var/objects")


class DatabaseConfig(StrictSection):
    url: str = "sqlite:///var/preread.db"


class PriorsConfig(StrictSection):
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


class WorklistConfig(StrictSection):
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


class LimitsConfig(StrictSection):
    """What one request may make the service hold or allocate (serving/ingest/validate.py)."""

    max_ecg_bytes: int = 20 * 1024 * 1024
    # A resting ECG is 10 s; longer than this is a Holter or stress recording, not for this service.
    max_ecg_seconds: float = Field(60.0, gt=0)
    # What decoding one image's Pixel Data may allocate (rows x columns x samples x frames x bits / 8).
    max_decoded_bytes: int = Field(1024 * 1024 * 1024, gt=0)
    # Request bodies above this are spooled to a temporary file instead of held in memory.
    spool_in_memory_bytes: int = Field(1024 * 1024, gt=0)


class RecoveryConfig(StrictSection):
    """Retries of failed AI reads (serving/store/work.py): exponential backoff, then listed as
    ai_failed for a doctor with no further automatic attempt."""

    max_attempts: int = Field(5, ge=1)
    backoff_base_seconds: float = Field(5.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)


class TriageConfig(StrictSection):
    ecg: Path = Path("triage/ecg.yaml")
    cxr: Path = Path("triage/cxr.yaml")


class ServingConfig(StrictSection):
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

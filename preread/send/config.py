"""The clinic sender's configuration: one YAML file, validated on load (configs/send.yaml is the example).

Relative paths in the file are taken from the file's own folder, so a clinic PC can keep the config,
the token and the CA certificate together (e.g. C:\\preread-send\\).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class SendConfigError(ValueError):
    """The config file is missing, not YAML, or fails validation (the message names the field)."""


class ListenerConfig(BaseModel):
    """The local DICOM C-STORE listener an X-ray unit or ECG cart sends to as to a PACS."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ae_title: str = Field("PREREADSEND", min_length=1, max_length=16)
    host: str = "0.0.0.0"
    port: int = Field(11113, ge=1, le=65535)
    # Calling AE titles allowed to send; empty = any (the clinic's own LAN).
    allowed_calling_ae_titles: list[str] = []

    @field_validator("ae_title")
    @classmethod
    def _ae_chars(cls, value: str) -> str:
        if not value.isascii() or "\\" in value or not value.strip():
            raise ValueError("an AE title is 1-16 ASCII characters without backslash")
        return value.strip()


class RetryConfig(BaseModel):
    """Exponential backoff with jitter; a transient failure is retried for as long as it takes."""

    model_config = ConfigDict(extra="forbid")
    initial_s: float = Field(2.0, gt=0)
    max_s: float = Field(300.0, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)


class ResultsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    poll_s: float = Field(30.0, gt=0, description="how often a sent study's AI read is asked for")
    max_poll_s: float = Field(
        1800.0,
        gt=0,
        description="once the AI read is back, the wait for the signature "
        "doubles from poll_s up to this (a thin link's bytes)",
    )
    keep_polling_days: float = Field(14.0, gt=0, description="stop asking for a signature after this long")


class SendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_url: str = Field(description="the county service, e.g. https://county.example.cn:8000")
    token_file: Path = Field(description="file holding the clinic's access token (preread token --role grassroots)")
    ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that signed the server's certificate; none: the system's trust store"
    )
    site: str | None = Field(None, description="site id the studies are sent for (default: the token's only site)")
    state_dir: Path = Field(Path("preread-send"), description="queue database, queued files, results, quarantine")
    watch_folder: Path | None = Field(None, description="studies dropped here are queued, then removed from here")
    watch_poll_s: float = Field(2.0, gt=0)
    listener: ListenerConfig = ListenerConfig()
    bandwidth_kbit_s: float | None = Field(None, gt=0, description="cap on upload speed (kbit/s); none: no cap")
    compression: Literal["auto", "none"] = "auto"
    disk_reserve_mb: float = Field(
        500.0, ge=0, description="new studies are refused when accepting one would leave less free space than this"
    )
    retry: RetryConfig = RetryConfig()
    results: ResultsConfig = ResultsConfig()
    allow_plain_http: bool = Field(False, description="allow http:// to a non-loopback server (never in production)")

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_unless_loopback(self) -> SendConfig:
        plain = urlparse(self.server_url).scheme == "http"
        if plain and not self.allow_plain_http and not is_loopback(self.server_url):
            raise ValueError(
                f"server_url {self.server_url} is plain HTTP: the token and the patients' data would "
                "cross the network unencrypted; use https:// (or allow_plain_http: true for a lab)"
            )
        return self

    @property
    def queue_dir(self) -> Path:
        return self.state_dir / "queue"

    @property
    def results_dir(self) -> Path:
        return self.state_dir / "results"

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def notifications_file(self) -> Path:
        return self.state_dir / "notifications.log"

    @property
    def database_path(self) -> Path:
        return self.state_dir / "queue.db"

    def token(self) -> str:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SendConfigError(f"token_file {self.token_file}: {exc.strerror or exc}") from exc
        if not token:
            raise SendConfigError(f"token_file {self.token_file} is empty")
        return token

    def resolved(self, base: Path) -> SendConfig:
        """Relative paths taken from ``base`` (the config file's folder)."""

        def fix(path: Path | None) -> Path | None:
            return None if path is None else (path if path.is_absolute() else (base / path))

        return self.model_copy(
            update={
                "token_file": fix(self.token_file),
                "ca_file": fix(self.ca_file),
                "state_dir": fix(self.state_dir),
                "watch_folder": fix(self.watch_folder),
            }
        )


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_send_config(path: str | Path) -> SendConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SendConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise SendConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SendConfigError(f"{path}: expected a mapping of settings")
    try:
        return SendConfig.model_validate(raw).resolved(path.resolve().parent)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors())
        raise SendConfigError(f"{path}: {problems}") from None

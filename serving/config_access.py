"""The serving config's access sections: who may log in (users, throttling), who may send (TLS, rate limits),
and what leaves the service about a patient (name masking, the audit trail, de-identified exports)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from serving.config_base import StrictSection


class BootstrapUser(StrictSection):
    """A user created at start if missing. Password from $``password_env``; if unset, a random one is
    generated and logged once (only its argon2 hash is stored)."""

    username: str
    role: Literal["grassroots", "reader", "datasci", "admin"]
    sites: list[str] = []
    display_name: str | None = None
    password_env: str | None = None


class LoginThrottleConfig(StrictSection):
    """Failed logins (audited as ``login_failed``) counted per account and per client address over
    ``window_seconds``: at the limit, that account or address is locked for ``lockout_seconds`` after its
    last failure (429 with Retry-After, audited as ``login_locked``; even the right password waits)."""

    enabled: bool = True
    max_failures_per_account: int = Field(5, ge=1)
    max_failures_per_client: int = Field(20, ge=1)
    window_seconds: float = Field(900.0, gt=0)
    lockout_seconds: float = Field(900.0, gt=0)


class AuthConfig(StrictSection):
    # The secret that signs tokens: $PREREAD_SECRET if set, else this file (created 0600 on first use).
    secret_file: Path = Path("var/secret.key")
    token_ttl_hours: float = Field(12.0, gt=0)
    # Web logins (POST /api/v1/login) get tokens with this lifetime.
    login_ttl_hours: float = Field(8.0, gt=0)
    login_throttle: LoginThrottleConfig = LoginThrottleConfig()
    users: list[BootstrapUser] = [
        BootstrapUser(username=username, role=role, sites=sites, display_name=display_name, password_env=password_env)
        for username, role, sites, display_name, password_env in (
            ("demo-reader", "reader", ["demo"], "Demo county reader", "PREREAD_DEMO_READER_PASSWORD"),
            ("demo-clinic", "grassroots", ["demo"], "Demo village clinic", "PREREAD_DEMO_CLINIC_PASSWORD"),
            ("demo-admin", "admin", ["*"], "Demo administrator", "PREREAD_DEMO_ADMIN_PASSWORD"),
        )
    ]


class PrivacyConfig(StrictSection):
    mask_patient_names: bool = True
    mask_patient_ids: bool = True


class RateBucket(StrictSection):
    """A token bucket: ``per_second`` sustained, up to ``burst`` at once."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class SiteRateLimits(StrictSection):
    http: RateBucket | None = None
    dicom: RateBucket | None = None


class RateLimitConfig(StrictSection):
    """Per-site ingest rate limits (serving/ingest/ratelimit.py), per ingress replica. Over the limit: HTTP
    429 with Retry-After; C-STORE 0xA700 (out of resources) with the wait in the Error Comment."""

    enabled: bool = True
    http: RateBucket = RateBucket(per_second=5, burst=100)  # ECG uploads + STOW-RS requests
    dicom: RateBucket = RateBucket(per_second=50, burst=1000)  # C-STORE instances
    sites: dict[str, SiteRateLimits] = {}  # per-site overrides by site id


class HttpTlsConfig(StrictSection):
    """HTTPS on the Ray Serve proxy (uvicorn's TLS). Client certificates are optional."""

    certfile: Path
    keyfile: Path
    keyfile_password_env: str | None = None  # name of the variable holding the key's password
    ca_file: Path | None = None  # CA bundle for client certificates


class DicomTlsConfig(StrictSection):
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


class TlsConfig(StrictSection):
    http: HttpTlsConfig | None = None
    dicom: DicomTlsConfig | None = None


class AuditConfig(StrictSection):
    # Repeated identical worklist views by one user (the page polls every few seconds) are written
    # to the trail as one aggregated event per window, with their count and time span.
    view_window_seconds: float = Field(300.0, ge=0)


class DeidConfig(StrictSection):
    """De-identified training exports (serving/results/deid.py, PS3.15 Annex E Basic Profile)."""

    # The re-identification keys (pseudonym ↔ original identifiers, date offsets): kept apart from
    # the worklist database and from every export, readable by the service account only.
    key_store: Path = Path("var/reid/keys.db")
    dates: Literal["shift", "remove"] = "shift"  # Retain Longitudinal Temporal Information (modified dates)
    max_date_shift_days: int = Field(365, ge=1)

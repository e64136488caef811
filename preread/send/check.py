"""`preread send --check`: is this PC ready to send? The link (the service answers), TLS (its
certificate verifies against the configured CA, and for how long), the token (accepted), the clock
(skew against the service's Date header: tokens and logs depend on it), compression on the wire,
free disk space, and the listener's port."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

import httpx

from preread.send.config import SendConfig, SendConfigError
from preread.send.upload import http_client

CLOCK_WARN_S, CLOCK_FAIL_S = 30.0, 300.0


@dataclass(frozen=True)
class CheckLine:
    name: str
    ok: bool
    detail: str
    warning: bool = False


def run_checks(cfg: SendConfig, timeout_s: float = 15.0) -> list[CheckLine]:
    lines: list[CheckLine] = []
    try:
        token = cfg.token()
        lines.append(CheckLine("token file", True, str(cfg.token_file)))
    except SendConfigError as exc:
        token = None
        lines.append(CheckLine("token file", False, str(exc)))
    url = urlparse(cfg.server_url)
    if url.scheme == "https":
        lines.append(_tls(cfg, url.hostname, url.port or 443, timeout_s))
    else:
        lines.append(CheckLine("tls", True, "plain HTTP (loopback or allow_plain_http): nothing encrypted", True))
    with http_client(cfg, timeout_s) as client:
        try:
            started = time.monotonic()
            health = client.get("/healthz")
            rtt_ms = (time.monotonic() - started) * 1000
        except httpx.HTTPError as exc:
            lines.append(CheckLine("link", False, f"{cfg.server_url} unreachable: {type(exc).__name__}: {exc}"))
            return lines
        lines.append(
            CheckLine(
                "link",
                health.status_code == 200,
                f"{cfg.server_url}/healthz HTTP {health.status_code} in {rtt_ms:.0f} ms",
            )
        )
        lines.append(clock_check(health))
        encodings = health.headers.get("accept-encoding", "")
        lines.append(
            CheckLine(
                "compression",
                True,
                f"service accepts request encodings: {encodings}"
                if encodings
                else "service advertises no request encoding: JSON/XML ECGs go uncompressed "
                "(DICOM and WFDB are compressed anyway)",
                not encodings,
            )
        )
        if token:
            lines.append(_token(client, token, cfg))
    lines.append(_disk(cfg))
    if cfg.listener.enabled:
        lines.append(_port(cfg))
    return lines


def _tls(cfg: SendConfig, host: str, port: int, timeout_s: float) -> CheckLine:
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert, version = tls.getpeercert(), tls.version()
    except ssl.SSLCertVerificationError as exc:
        return CheckLine(
            "tls",
            False,
            f"the server's certificate does not verify against "
            f"{cfg.ca_file or 'the system trust store'}: {exc.verify_message}",
        )
    except (OSError, ssl.SSLError) as exc:
        return CheckLine("tls", False, f"TLS to {host}:{port} failed: {exc}")
    expires = ssl.cert_time_to_seconds(cert["notAfter"]) if cert and "notAfter" in cert else None
    days = (expires - time.time()) / 86400 if expires else None
    detail = f"{version}, certificate verified" + (f", expires in {days:.0f} days" if days is not None else "")
    return CheckLine("tls", True, detail, warning=days is not None and days < 30)


def clock_check(response: httpx.Response) -> CheckLine:
    date = response.headers.get("date")
    if not date:
        return CheckLine("clock", True, "the service sent no Date header: skew not measured", True)
    skew = time.time() - parsedate_to_datetime(date).timestamp()
    detail = f"this PC is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the service"
    if abs(skew) > CLOCK_FAIL_S:
        return CheckLine("clock", False, detail + ": set the clock (tokens and report times depend on it)")
    return CheckLine("clock", True, detail, warning=abs(skew) > CLOCK_WARN_S)


def _token(client: httpx.Client, token: str, cfg: SendConfig) -> CheckLine:
    # The clinic's own list (a clinic token may not read the county's reading worklist).
    params = {"limit": 1, **({"site": cfg.site} if cfg.site else {})}
    try:
        response = client.get("/api/v1/submissions", params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return CheckLine("token", False, f"could not ask: {type(exc).__name__}: {exc}")
    if response.status_code == 200:
        return CheckLine("token", True, "accepted by the service")
    if response.status_code == 401:
        return CheckLine("token", False, "rejected (expired or not issued by this service): ask for a new one")
    if response.status_code == 403:
        return CheckLine("token", False, f"valid but not allowed here: {response.text[:200]}")
    return CheckLine("token", False, f"HTTP {response.status_code}: {response.text[:200]}")


def _disk(cfg: SendConfig) -> CheckLine:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(cfg.state_dir).free / 2**20
    ok = free_mb >= cfg.disk_reserve_mb
    return CheckLine(
        "disk",
        ok,
        f"{free_mb:.0f} MiB free in {cfg.state_dir}, reserve {cfg.disk_reserve_mb:.0f} MiB"
        + ("" if ok else ": new studies would be refused"),
    )


def _port(cfg: SendConfig) -> CheckLine:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((cfg.listener.host, cfg.listener.port))
        except OSError as exc:
            return CheckLine(
                "listener",
                True,
                f"port {cfg.listener.port} busy ({exc.strerror}): is a sender already running?",
                warning=True,
            )
    return CheckLine("listener", True, f"{cfg.listener.ae_title} can listen on {cfg.listener.host}:{cfg.listener.port}")

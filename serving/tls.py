"""TLS for the two ways in: HTTPS on the Ray Serve proxy, and a DICOM TLS SCP.

HTTP: Ray Serve's proxy is uvicorn, and ``serve.start(http_options=...)`` takes uvicorn's
``ssl_certfile`` / ``ssl_keyfile`` (``http_options`` below builds them from ``tls.http``). A
deployment that terminates TLS on a reverse proxy (nginx, a hospital's load balancer) leaves
``tls.http`` unset and binds the service to loopback or a private network behind it.

DICOM: PS3.15 Annex B "secure transport connection profiles" — TLS 1.2 or newer (BCP 195), the
server's certificate, and by default mutual authentication: a site's modality or PACS presents a
certificate signed by the CA in ``tls.dicom.ca_file``. Calling AE titles are still checked against
the configured sites on top of that, and a client certificate must name the calling AE title
(``certificate_matches_ae``): a site's certificate does not let it send as another site.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any


def server_context(
    certfile: Path,
    keyfile: Path,
    ca_file: Path | None = None,
    require_client_cert: bool = False,
    password: str | None = None,
) -> ssl.SSLContext:
    """A server-side context: TLS ≥ 1.2, our certificate, client certificates verified against
    ``ca_file`` (required or optional)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), str(keyfile), password=password)
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("tls: require_client_cert needs ca_file (the CA that signs the clients' certificates)")
    return context


def client_context(ca_file: Path, certfile: Path | None = None, keyfile: Path | None = None) -> ssl.SSLContext:
    """A client-side context that trusts ``ca_file`` and presents our certificate when given (for
    sending results to a PACS over TLS, and for tests)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


def dicom_server_context(tls: Any) -> ssl.SSLContext:
    """The SCP's context from ``tls.dicom`` (serving.config_access.DicomTlsConfig)."""
    return server_context(tls.certfile, tls.keyfile, tls.ca_file, tls.require_client_cert)


def certificate_names(peer_cert: dict[str, Any] | None) -> set[str]:
    """The names a peer certificate (``SSLSocket.getpeercert()``) carries: subject common names and
    DNS subjectAltNames."""
    if not peer_cert:
        return set()
    names = {value for rdn in peer_cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in peer_cert.get("subjectAltName", ()) if kind == "DNS"}
    return names


def certificate_matches_ae(
    peer_cert: dict[str, Any] | None, ae_title: str, allowed: dict[str, list[str]] | None = None
) -> bool:
    """Whether a client certificate may speak for ``ae_title``: one of its names is the AE title
    itself or a name ``allowed`` (tls.dicom.certificate_names) maps it to; case and padding ignored."""
    wanted = {ae_title.strip().casefold()} | {n.strip().casefold() for n in (allowed or {}).get(ae_title.strip(), [])}
    return bool(wanted & {n.strip().casefold() for n in certificate_names(peer_cert)})


def http_options(cfg: Any) -> dict[str, Any]:
    """``serve.start(http_options=...)`` for the configured host and port, with TLS when
    ``tls.http`` is set. Checks the files exist so a typo fails at start, naming the field."""
    options: dict[str, Any] = {"host": cfg.http.host, "port": cfg.http.port}
    tls = cfg.tls.http
    if tls is None:
        return options
    for field in ("certfile", "keyfile", "ca_file"):
        path = getattr(tls, field)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"tls.http.{field}: no such file {path}")
    server_context(tls.certfile, tls.keyfile, tls.ca_file, password=_password(tls))  # fail now, not in the proxy
    options.update(ssl_certfile=str(tls.certfile), ssl_keyfile=str(tls.keyfile))
    if tls.ca_file is not None:
        options["ssl_ca_certs"] = str(tls.ca_file)
    if tls.keyfile_password_env:
        options["ssl_keyfile_password"] = _password(tls)
    return options


def _password(tls: Any) -> str | None:
    if not tls.keyfile_password_env:
        return None
    value = os.environ.get(tls.keyfile_password_env)
    if value is None:
        raise KeyError(f"tls.http.keyfile_password_env: ${tls.keyfile_password_env} is not set")
    return value


def scheme(cfg: Any) -> str:
    return "https" if cfg.tls.http is not None else "http"

"""The DICOM C-STORE SCP (pynetdicom). Sending our results to a PACS is serving/results/pacs.py.

Where it runs: a server thread inside the ingress replica (serving/app.py), not its own deployment.
The SCP needs exactly what the ingress already has — the DB, the object store, the ECG workflow and
an event loop for ECG reads — and a fixed TCP port; a separate 1-replica deployment would add a
second copy of every service and a Ray hop for each instance with no gain. The listening socket
sets SO_REUSEPORT, so every ingress replica on a node binds the same port and the kernel spreads
new associations over them: when one replica dies the others go on taking DICOM (a cluster puts a
TCP load balancer in front of the nodes). pynetdicom runs each association in its own thread, so a
slow sender blocks no one.

Acknowledgement: the success status (0x0000) is returned only after DicomIngest has fsync'd the
object and committed its row; a storage or database failure answers 0xA700 (out of resources:
resend later), as does a site over its rate limit; an undecodable or invalid object 0xC000 with the
reason in the Error Comment.

TLS: with ``tls.dicom`` configured a second listener speaks DICOM over TLS (PS3.15 Annex B, mutual
authentication by default; serving/tls.py), beside the plain one or instead of it; there a client
certificate must name the calling AE title (``check_certificate``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydicom import uid as syntax
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from datasets.vocabulary.sop import STORAGE_SOP_CLASSES
from serving.ingest.dicom import DicomIngest, DicomInputError
from serving.ingest.ratelimit import SiteRateLimiter
from serving.priority import DIMSE_PRIORITY_HIGH
from serving.store.objects import StorageUnavailable
from serving.tls import certificate_matches_ae, certificate_names, dicom_server_context

log = logging.getLogger("preread.dicom.scp")

# What the SCP accepts: the uncompressed syntaxes and the lossless and lossy compressions our readers decode.
TRANSFER_SYNTAXES = [
    syntax.ImplicitVRLittleEndian,
    syntax.ExplicitVRLittleEndian,
    syntax.DeflatedExplicitVRLittleEndian,
    syntax.ExplicitVRBigEndian,
    syntax.JPEGBaseline8Bit,
    syntax.JPEGExtended12Bit,
    syntax.JPEGLossless,
    syntax.JPEGLosslessSV1,
    syntax.JPEGLSLossless,
    syntax.JPEGLSNearLossless,
    syntax.JPEG2000Lossless,
    syntax.JPEG2000,
    syntax.RLELossless,
]

OnEcg = Callable[[str], None]  # (study_uid) → read the ECG this worker leased at arrival


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        # LO: 64 characters, one value (a backslash would split it)
        status.ErrorComment = comment.encode("ascii", "replace").decode().replace("\\", "/")[:64]
    return status


class _SharedPortServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with SO_REUSEPORT, so every ingress replica on a node listens on
    the DICOM port and the kernel balances associations between them."""

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class StorageScp:
    """C-ECHO + C-STORE SCP. Calling AE titles map to sites; an unknown one is rejected at
    association (A-ASSOCIATE-RJ, reason 3: calling AE title not recognised), and so is a called AE title
    other than ours when ``check_called_ae`` (reason 7: called AE title not recognised)."""

    def __init__(
        self,
        ingest: DicomIngest,
        ae_title: str,
        host: str,
        port: int,
        ae_sites: dict[str, str],
        on_ecg: OnEcg | None = None,
        limiter: SiteRateLimiter | None = None,
        tls: Any = None,
        plain: bool = True,
        check_called_ae: bool = True,
    ):
        self.ingest, self.ae_title, self.host, self.port = ingest, ae_title, host, port
        self.check_called_ae = check_called_ae
        self.ae_sites = {ae.strip(): site for ae, site in ae_sites.items()}
        self.on_ecg = on_ecg
        self.limiter, self.tls, self.plain = limiter, tls, plain or tls is None
        self._servers: list = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, ingest: DicomIngest, on_ecg: OnEcg | None = None, **kwargs) -> StorageScp:
        ae_sites = {ae: site.id for site in cfg.sites for ae in site.ae_titles}
        tls = cfg.tls.dicom
        kwargs.setdefault("limiter", SiteRateLimiter(cfg.rate_limits, "dicom"))
        return cls(
            ingest,
            cfg.dicom.ae_title,
            cfg.dicom.host,
            cfg.dicom.port,
            ae_sites,
            on_ecg,
            tls=tls,
            plain=tls is None or tls.plain_too,
            check_called_ae=cfg.dicom.check_called_ae,
            **kwargs,
        )

    def _ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0  # unlimited: large radiographs arrive in fewer PDUs
        ae.add_supported_context(Verification)
        for uid in STORAGE_SOP_CLASSES:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        ae.require_calling_aet = sorted(self.ae_sites)
        ae.require_called_aet = self.check_called_ae  # pynetdicom: the called AE must be ae_title (reason 7)
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        return ae

    def _serve(self, port: int, ssl_context=None):
        handlers = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_ECHO, lambda event: 0x0000)]
        if ssl_context is not None:
            handlers.append((evt.EVT_REQUESTED, self.check_certificate))
        ae = self._ae()
        server = ae.make_server(
            (self.host, port), evt_handlers=handlers, ssl_context=ssl_context, server_class=_SharedPortServer
        )
        ae._servers.append(server)  # as AE.start_server does: the server's shutdown() removes it there
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        threading.Thread(target=server.serve_forever, name=f"preread-scp-{port}@{stamp}", daemon=True).start()
        return server

    def start(self) -> StorageScp:
        with self._lock:
            if self._servers:
                return self
            try:
                if self.plain:
                    self._servers.append(self._serve(self.port))
                    log.info(
                        "DICOM SCP %s listening on %s:%d (sites by calling AE: %s)",
                        self.ae_title,
                        self.host,
                        self.port,
                        self.ae_sites,
                    )
                if self.tls is not None:
                    self._servers.append(self._serve(self.tls.port, dicom_server_context(self.tls)))
                    log.info(
                        "DICOM TLS SCP %s listening on %s:%d (client certificates %s)",
                        self.ae_title,
                        self.host,
                        self.tls.port,
                        "required" if self.tls.require_client_cert else "optional",
                    )
            except Exception:
                self._shutdown()
                raise
        return self

    def _shutdown(self) -> None:
        for server in self._servers:
            server.shutdown()
        self._servers = []

    def stop(self) -> None:
        with self._lock:
            self._shutdown()

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def check_certificate(self, event) -> None:
        """On the TLS listener, before negotiation: a presented client certificate must name the
        calling AE title (or a name tls.dicom.certificate_names allows for it); otherwise the
        association is rejected as from an unrecognised calling AE (A-ASSOCIATE-RJ 1/1/3)."""
        assoc = event.assoc
        try:
            calling = str(assoc.requestor.primitive.calling_ae_title).strip()
            peer = assoc.dul.socket.socket.getpeercert()
            if not peer:  # no certificate: only possible with require_client_cert false, which allows it
                return
            if certificate_matches_ae(peer, calling, self.tls.certificate_names):
                return
            log.warning(
                "TLS association from calling AE %s rejected: its certificate names %s, not that AE title",
                calling,
                sorted(certificate_names(peer)),
            )
        except Exception:  # pynetdicom would log and go on: fail closed instead
            log.exception("TLS association rejected: could not check the client certificate")
        assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected-permanent, service-user, calling AE not recognised
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def handle_store(self, event) -> Dataset | int:
        calling = event.assoc.requestor.ae_title.strip()
        site = self.ae_sites.get(calling)
        if site is None:  # require_calling_aet stops these at association; belt and braces
            return _status(0xC000, f"calling AE {calling} not recognised")
        wait = self.limiter.check(site) if self.limiter is not None else 0.0
        if wait > 0:
            log.warning("C-STORE from %s refused: site %s over its rate limit", calling, site)
            return _status(0xA700, f"rate limit for site {site}: retry in {wait:.0f} s")
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - pynetdicom could not encode what it received: refuse it
            log.warning("C-STORE from %s: cannot encode received dataset: %s", calling, exc)
            return _status(0xC000, f"undecodable dataset: {exc}")
        # [priority] the C-STORE request's (0000,0700) Priority, kept with the study (serving/priority.py)
        priority = "urgent" if getattr(event.request, "Priority", None) == DIMSE_PRIORITY_HIGH else None
        try:
            accepted = self.ingest.accept(data, site, source="scp", sender=calling, priority=priority)
        except DicomInputError as exc:
            log.warning("C-STORE from %s refused: %s", calling, exc.reason)
            code = exc.status if exc.status in (0xA700, 0xA900) or 0xC000 <= exc.status <= 0xCFFF else 0xC000
            return _status(code, exc.reason)
        except StorageUnavailable as exc:
            log.error("C-STORE from %s: storage unavailable: %s", calling, exc)
            return _status(0xA700, "storage unavailable, resend later")
        except Exception as exc:  # the DB refused: not stored as far as the sender may know
            log.exception("C-STORE from %s: could not record the instance", calling)
            return _status(0xA700, f"could not record: {type(exc).__name__}")
        if accepted.ecg_record is not None and self.on_ecg is not None:
            try:
                self.on_ecg(accepted.study_uid)
            except Exception:  # the lease lapses and the dispatcher's sweep reads it; the object is safe
                log.exception("could not schedule the ECG read of %s", accepted.study_uid)
        return 0x0000

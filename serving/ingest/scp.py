"""The DICOM C-STORE SCP (pynetdicom) and the C-STORE SCU that sends our results to a PACS.

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

import io
import logging
import socket
import threading
from datetime import datetime
from typing import Any, Callable

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from serving.dicom.ingest import DicomIngest, DicomInputError
from serving.priority import COMMAND_PRIORITY
from serving.ratelimit import SiteRateLimiter
from serving.storage import StorageUnavailable

log = logging.getLogger("preread.dicom.scp")

STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
}
TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
]
# Sent to a PACS: what our results are, in the syntax we write them.
RESULT_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

OnEcg = Callable[[str, Any], None]  # (study_uid, EcgRecord) → schedule the ECG read


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
    association (A-ASSOCIATE-RJ, reason 3: calling AE title not recognised)."""

    def __init__(self, ingest: DicomIngest, ae_title: str, host: str, port: int,
                 ae_sites: dict[str, str], on_ecg: OnEcg | None = None, on_stored: Callable[[], None] | None = None,
                 limiter: SiteRateLimiter | None = None, tls: Any = None, plain: bool = True):
        self.ingest, self.ae_title, self.host, self.port = ingest, ae_title, host, port
        self.ae_sites = {ae.strip(): site for ae, site in ae_sites.items()}
        self.on_ecg, self.on_stored = on_ecg, on_stored
        self.limiter, self.tls, self.plain = limiter, tls, plain or tls is None
        self._servers: list = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, ingest: DicomIngest, on_ecg: OnEcg | None = None, **kwargs) -> "StorageScp":
        ae_sites = {ae: site.id for site in cfg.sites for ae in site.ae_titles}
        tls = cfg.tls.dicom
        kwargs.setdefault("limiter", SiteRateLimiter(cfg.rate_limits, "dicom"))
        return cls(ingest, cfg.dicom.ae_title, cfg.dicom.host, cfg.dicom.port, ae_sites, on_ecg,
                   tls=tls, plain=tls is None or tls.plain_too, **kwargs)

    def _ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0  # unlimited: large radiographs arrive in fewer PDUs
        ae.add_supported_context(Verification)
        for uid in STORAGE_SOP_CLASSES:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        ae.require_calling_aet = sorted(self.ae_sites)
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        return ae

    def _serve(self, port: int, ssl_context=None):
        handlers = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_ECHO, lambda event: 0x0000)]
        if ssl_context is not None:
            handlers.append((evt.EVT_REQUESTED, self.check_certificate))
        ae = self._ae()
        server = ae.make_server((self.host, port), evt_handlers=handlers, ssl_context=ssl_context,
                                server_class=_SharedPortServer)
        ae._servers.append(server)  # as AE.start_server does: the server's shutdown() removes it there
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        threading.Thread(target=server.serve_forever, name=f"preread-scp-{port}@{stamp}", daemon=True).start()
        return server

    def start(self) -> "StorageScp":
        with self._lock:
            if self._servers:
                return self
            try:
                if self.plain:
                    self._servers.append(self._serve(self.port))
                    log.info("DICOM SCP %s listening on %s:%d (sites by calling AE: %s)", self.ae_title, self.host,
                             self.port, self.ae_sites)
                if self.tls is not None:
                    from serving.tls import dicom_server_context  # noqa: PLC0415

                    self._servers.append(self._serve(self.tls.port, dicom_server_context(self.tls)))
                    log.info("DICOM TLS SCP %s listening on %s:%d (client certificates %s)", self.ae_title,
                             self.host, self.tls.port, "required" if self.tls.require_client_cert else "optional")
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
        from serving.tls import certificate_matches_ae, certificate_names  # noqa: PLC0415

        assoc = event.assoc
        try:
            calling = str(assoc.requestor.primitive.calling_ae_title).strip()
            peer = assoc.dul.socket.socket.getpeercert()
            if not peer:  # no certificate: only possible with require_client_cert false, which allows it
                return
            if certificate_matches_ae(peer, calling, self.tls.certificate_names):
                return
            log.warning("TLS association from calling AE %s rejected: its certificate names %s, not that AE title",
                        calling, sorted(certificate_names(peer)))
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
        except Exception as exc:
            log.warning("C-STORE from %s: cannot encode received dataset: %s", calling, exc)
            return _status(0xC000, f"undecodable dataset: {exc}")
        try:
            accepted = self.ingest.accept(data, site, source="scp", sender=calling)
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
        # [priority] the C-STORE request's (0000,0700) Priority, for the dispatcher (serving/priority.py)
        COMMAND_PRIORITY.note(accepted.study_uid, getattr(event.request, "Priority", None))
        if accepted.ecg_record is not None and self.on_ecg is not None:
            try:
                self.on_ecg(accepted.study_uid, accepted.ecg_record)
            except Exception:  # the read is retried by recovery; the object is safe
                log.exception("could not schedule the ECG read of %s", accepted.study_uid)
        if self.on_stored is not None:
            self.on_stored()
        return 0x0000


def send_to_pacs(objects: list[bytes], ae_title: str, host: str, port: int, calling_ae: str = "PREREAD",
                 timeout_s: float = 30.0) -> list[tuple[str, int | None, str]]:
    """C-STORE each object (Part 10 bytes) to a PACS. Returns (SOP Instance UID, status or None, note)."""
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in objects]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(uid, RESULT_TRANSFER_SYNTAXES)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        return [(str(ds.SOPInstanceUID), None, f"association with {ae_title}@{host}:{port} failed") for ds in datasets]
    results = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            results.append((str(ds.SOPInstanceUID), code, "" if code == 0 else str(status.get("ErrorComment", ""))))
    finally:
        assoc.release()
    return results

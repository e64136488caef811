"""The DICOM C-STORE SCP (pynetdicom) and the C-STORE SCU that sends our results to a PACS.

Where it runs: a server thread inside the ingress replica (serving/app.py), not its own deployment.
The SCP needs exactly what the ingress already has — the DB, the object store, the ECG workflow and
an event loop for ECG reads — and a fixed TCP port, which only one process may bind; a separate
1-replica deployment would add a second copy of every service and a Ray hop for each instance with
no gain. With several ingress replicas only the one that binds the port serves DICOM (the others
log it and go on with HTTP); a cluster puts a TCP load balancer in front or runs one ingress per
node. pynetdicom runs each association in its own thread, so a slow sender blocks no one.

Acknowledgement: the success status (0x0000) is returned only after DicomIngest has fsync'd the
object and committed its row; a storage or database failure answers 0xA700 (out of resources:
resend later), an undecodable or invalid object 0xC000 with the reason in the Error Comment.
"""

from __future__ import annotations

import io
import logging
import threading
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

from serving.dicom.ingest import DicomIngest, DicomInputError
from serving.priority import COMMAND_PRIORITY
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
        status.ErrorComment = comment.encode("ascii", "replace").decode()[:64]  # LO: 64 chars
    return status


class StorageScp:
    """C-ECHO + C-STORE SCP. Calling AE titles map to sites; an unknown one is rejected at
    association (A-ASSOCIATE-RJ, reason 3: calling AE title not recognised)."""

    def __init__(self, ingest: DicomIngest, ae_title: str, host: str, port: int,
                 ae_sites: dict[str, str], on_ecg: OnEcg | None = None, on_stored: Callable[[], None] | None = None):
        self.ingest, self.ae_title, self.host, self.port = ingest, ae_title, host, port
        self.ae_sites = {ae.strip(): site for ae, site in ae_sites.items()}
        self.on_ecg, self.on_stored = on_ecg, on_stored
        self._server = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, ingest: DicomIngest, on_ecg: OnEcg | None = None, **kwargs) -> "StorageScp":
        ae_sites = {ae: site.id for site in cfg.sites for ae in site.ae_titles}
        return cls(ingest, cfg.dicom.ae_title, cfg.dicom.host, cfg.dicom.port, ae_sites, on_ecg, **kwargs)

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

    def start(self) -> "StorageScp":
        with self._lock:
            if self._server is None:
                handlers = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_ECHO, lambda event: 0x0000)]
                self._server = self._ae().start_server((self.host, self.port), block=False, evt_handlers=handlers)
                log.info("DICOM SCP %s listening on %s:%d (sites by calling AE: %s)", self.ae_title, self.host,
                         self.port, self.ae_sites)
        return self

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def handle_store(self, event) -> Dataset | int:
        calling = event.assoc.requestor.ae_title.strip()
        site = self.ae_sites.get(calling)
        if site is None:  # require_calling_aet stops these at association; belt and braces
            return _status(0xC000, f"calling AE {calling} not recognised")
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

"""Sending results to a PACS: C-STORE (SCU) of the stored SR and SC of a study to the configured
``dicom.results_destination``."""

from __future__ import annotations

import io
import logging

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from serving.config import ServingConfig
from serving.store.db import Database
from serving.store.objects import ObjectStore

log = logging.getLogger("preread.dicom.pacs")

# Sent to a PACS: what our results are, in the syntax we write them.
RESULT_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def send_to_pacs(
    objects: list[bytes], ae_title: str, host: str, port: int, calling_ae: str = "PREREAD", timeout_s: float = 30.0
) -> list[tuple[str, int | None, str]]:
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


def forward_results(
    cfg: ServingConfig, db: Database, store: ObjectStore, study_uid: str, results: dict[str, dict[str, str]]
) -> None:
    """Send a study's stored result objects to the configured PACS; refusals are logged (the
    results stay stored and served by WADO-RS)."""
    dest = cfg.dicom.results_destination
    if dest is None:
        return
    objects = []
    for item in results.values():
        found = db.find_instance(item["sop_instance_uid"])
        if found is not None:
            objects.append(store.get(found[1].storage_key))
    try:
        sent = send_to_pacs(objects, dest.ae_title, dest.host, dest.port, cfg.dicom.ae_title, dest.timeout_s)
    except Exception as exc:  # noqa: BLE001 - the PACS is down or refuses: the read stays, sending is retried
        log.warning("could not send the results of %s to %s: %s", study_uid, dest.ae_title, exc)
        return
    for sop, status, note in sent:
        if status != 0:
            log.warning("PACS %s refused %s of study %s: status %s %s", dest.ae_title, sop, study_uid, status, note)

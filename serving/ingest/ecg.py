"""One ECG from request body to worklist row: parse, validate, store durably, read, record.

Order matters: nothing is acknowledged before the original is on disk (fsync) and its row is
committed; a study stored but not yet read stays in status ``received`` — the durable queue
(serving/store/work.py). The accepting request leases its new study and reads it at once; if that
read fails it is retried with backoff, and if the process dies the lease lapses and another
worker's sweep (the dispatcher, serving/reading/dispatcher.py) reads the stored original.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.ecg.errors import EcgInputError
from datasets.ecg.readers import READERS, read_ecg
from datasets.ecg.record import EcgRecord
from datasets.ecg.validate import validate_record
from models.ecg.pipeline import EcgInput
from models.read import PreRead
from serving import logs
from serving.ingest.validate import IngestLimits, IngestRefused, check_ecg_record, validate_dicom
from serving.privacy import PatientKeyer, mask_id, mask_name
from serving.store import audit
from serving.store.db import Database, NewInstance
from serving.store.objects import ObjectStore
from serving.store.queries import study_site
from serving.store.schema import RECEIVED, Study
from serving.store.work import WorkQueue

log = logging.getLogger("preread.ecg")

EcgReadFn = Callable[[EcgInput], Awaitable[PreRead]]

# How a stored original is labelled, per reader (DICOM, WFDB zip, JSON, the carts' XML, SCP-ECG).
CONTENT_TYPES = {reader.name: reader.content_types[0] for reader in READERS if reader.content_types}
SUFFIX = {reader.name: reader.suffixes[0] for reader in READERS if reader.suffixes}


def uid_from_digest(digest: str, namespace: str) -> str:
    """A DICOM UID (2.25 + 128-bit integer) derived from content, so a re-sent record maps to the
    same instance: idempotency for formats that carry no UID of their own."""
    value = int(hashlib.sha256(f"{namespace}:{digest}".encode()).hexdigest()[:32], 16)
    return f"2.25.{value}"


@dataclass
class AcceptedEcg:
    study: Study
    created: bool
    record: EcgRecord


class SiteError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# Said to a site that sends into another site's study: neither whose it is nor that it exists elsewhere
# beyond "not for you" (the administrator finds the details in the audit trail).
CROSS_SITE_REASON = (
    "this Study or SOP Instance UID cannot be used by this site; nothing was stored (send the object with its own UIDs)"
)


def refuse_cross_site(
    db: Database, site: str, owner: str, sender: str | None, study_uid: str, sop_uid: str | None, source: str
) -> None:
    """Record a site sending into another site's study as a security event (both sites named there)."""
    log.warning("refused %s from site %s into a study of another site (security_cross_site)", source, site)
    audit.record(
        db,
        "security_cross_site",
        user=sender,
        study_uid=study_uid,
        detail={"site": site, "owner": owner, "sop_instance_uid": sop_uid, "source": source},
    )


class EcgWorkflow:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        read_fn: EcgReadFn,
        known_sites: set[str],
        mask_names: bool = True,
        mask_ids: bool = True,
        queue: WorkQueue | None = None,
        limits: IngestLimits | None = None,
        patient_key: PatientKeyer | None = None,
    ):
        self.db, self.store, self.read_fn = db, store, read_fn
        self.patient_key = patient_key  # who the patient is, for priors (None: no priors)
        self.queue = queue or WorkQueue(db)
        self.known_sites = known_sites
        self.mask_names, self.mask_ids = mask_names, mask_ids
        self.limits = limits or IngestLimits()

    def parse(
        self, body: bytes, content_type: str | None, filename: str | None, dicom_checked: bool = False
    ) -> EcgRecord:
        """Bytes → validated record in standard lead order; EcgInputError names the problem. The one
        ingest validator (serving/ingest/validate.py) checks a DICOM body as it checks STOW-RS and C-STORE
        (``dicom_checked``: already done by the caller) and every record's UIDs, rate, duration and
        patient fields. A reader that trips over malformed input in a way it did not foresee (fuzzing
        finds these: an unknown VR in a DICOM header, a WFDB header with absurd numbers) is still a bad
        upload, not a crash."""
        try:
            if not dicom_checked and body[128:132] == b"DICM":
                validate_dicom(body, self.limits)
            record = validate_record(read_ecg(body, content_type=content_type, filename=filename))
            for warning in check_ecg_record(record, self.limits):
                log.warning("ECG accepted with a warning: %s", warning)
            return record
        except IngestRefused as exc:  # "object": the upload as a whole, which the ECG API calls "file"
            raise EcgInputError("file" if exc.field == "object" else exc.field, exc.reason) from exc
        except EcgInputError:
            raise
        except (MemoryError, RecursionError) as exc:
            raise EcgInputError("file", f"too complex to read: {type(exc).__name__}") from exc
        except Exception as exc:
            log.info("unreadable ECG upload: %s: %s", type(exc).__name__, exc)
            raise EcgInputError("file", f"unreadable: {type(exc).__name__}: {str(exc)[:200]}") from exc

    def accept(self, body: bytes, record: EcgRecord, site: str, sender: str, no_ai: bool = False) -> AcceptedEcg:
        """Store durably, then record the row (leased by this worker, which reads it next).
        Idempotent on the SOP Instance UID (or content). ``no_ai``: the patient declined the AI read."""
        if site not in self.known_sites:
            raise SiteError(422, f"site {site!r} is not configured")
        fmt = record.meta.get("format", "json")
        digest = hashlib.sha256(body).hexdigest()
        sop_uid = record.meta.get("sop_instance_uid") or uid_from_digest(digest, "ecg-instance")
        study_uid = record.meta.get("study_instance_uid") or uid_from_digest(digest, "ecg-study")
        # A site never sees or joins another site's study, not even by re-sending its bytes or UIDs
        # (the DICOM path refuses the same way: serving/ingest/dicom.py).
        existing = self.db.find_instance(sop_uid)
        owner = existing[0].site if existing is not None else study_site(self.db, study_uid)
        if owner is not None and owner != site:
            refuse_cross_site(self.db, site, owner, sender, study_uid, sop_uid, "http")
            raise SiteError(409, CROSS_SITE_REASON)
        # A repeat costs no new file (put finds the same bytes stored) and no new row (accept_instance).
        stored = self.store.put(body, SUFFIX.get(fmt, ".bin"))
        patient = record.patient
        logs.redact.remember_patient(patient.get("name"), patient.get("id"))
        study, _, created = self.db.accept_instance(
            NewInstance(
                sop_instance_uid=sop_uid,
                study_uid=study_uid,
                site=site,
                modality="ECG",
                content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"),
                storage_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                source="http",
                sender=sender,
                series_uid=record.meta.get("series_instance_uid"),
                sop_class_uid=record.meta.get("sop_class_uid"),
                patient_id=self._mask(patient.get("id"), mask_id, self.mask_ids),
                patient_name=self._mask(patient.get("name"), mask_name, self.mask_names),
                patient_key=self._patient_key(site, patient),
                patient_sex=_short(patient.get("sex"), 8),
                patient_age=_short(patient.get("age"), 16),
                description=f"12-lead ECG ({fmt})",
                lease_by=self.queue.worker_id,
                no_ai=no_ai,
            )
        )
        return AcceptedEcg(study, created, record)

    async def read(self, study_uid: str, record: EcgRecord, site: str | None = None) -> PreRead | None:
        """Run the AI read of a study this worker has leased, and record it (once: a read another
        worker recorded first wins). A failure lists the study as ai_failed with the reason and the
        next automatic attempt: nothing is hidden."""
        self.queue.hold(study_uid)
        try:
            read = await self.read_fn(
                EcgInput(
                    np.asarray(record.signals, dtype=np.float32),
                    float(record.sampling_rate),
                    site,
                    dict(record.patient),
                )
            )
            if record.machine is not None:  # the cart's own measurements and statements, shown beside ours
                read = read.model_copy(update={"machine": record.machine.to_json()})
        except Exception as exc:  # noqa: BLE001 - the replica died or refused: keep the study, say why, retry
            log.warning("AI read failed for study %s: %s: %s", study_uid, type(exc).__name__, exc)
            await asyncio.to_thread(self.queue.record_failure, study_uid, f"{type(exc).__name__}: {exc}")
            return None
        finally:
            self.queue.drop(study_uid)
        await asyncio.to_thread(self.queue.record_pre_read, study_uid, read)
        return read

    async def read_accepted(self, accepted: AcceptedEcg) -> PreRead | None:
        """The read right after accepting: a new study is leased already; a re-sent one that is still
        waiting (its first worker died) is read here if nobody else holds it."""
        study = accepted.study
        if not accepted.created and not (
            study.status == RECEIVED and await asyncio.to_thread(self.queue.claim, study.study_uid)
        ):
            return None
        if study.no_ai:
            return None
        return await self.read(study.study_uid, accepted.record, study.site)

    async def read_stored(self, study: Study) -> PreRead | None:
        """A leased study read from its stored original (the sweeper's path after a restart or a
        failure). An original that no longer parses will not parse on a retry: no further attempt."""
        original = next((i for i in study.instances if (i.role or "original") == "original"), None)
        try:
            if original is None:
                raise OSError("no original instance stored")
            data = await asyncio.to_thread(self.store.get, original.storage_key)
            record = self.parse(data, original.content_type, None)
        except (EcgInputError, OSError) as exc:
            await asyncio.to_thread(
                self.queue.record_failure, study.study_uid, f"stored original unreadable: {exc}", True
            )
            return None
        return await self.read(study.study_uid, record, study.site)

    def _patient_key(self, site: str, patient: dict[str, Any]) -> str | None:
        if self.patient_key is None:
            return None
        return self.patient_key(
            site=site,
            patient_id=_short(patient.get("id"), 64),
            issuer=_short(patient.get("issuer"), 64),
            name=_short(patient.get("name"), 128),
            birth_date=_short(patient.get("birth_date"), 16),
            sex=_short(patient.get("sex"), 8),
        )

    @staticmethod
    def _mask(value: Any, fn: Callable[[str], str], enabled: bool) -> str | None:
        if value in (None, ""):
            return None
        return fn(str(value)) if enabled else str(value)[:128]


def _short(value: Any, n: int) -> str | None:
    return None if value in (None, "") else str(value)[:n]

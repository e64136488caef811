"""One DICOM object from bytes to a stored, listed instance (no Ray, no network).

validate (parses fully; truncated, absurd declared lengths, non-DICOM, missing UIDs → DicomInputError
with the reason) → ObjectStore.put (fsync'd) → DB row committed (patient fields masked as on the ECG
path) → only then does the caller acknowledge. Idempotent on the SOP Instance UID. 12-lead / general
ECG waveforms take the ECG path (EcgWorkflow accept; the caller then runs the read).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from datasets.ecg.errors import EcgInputError
from datasets.ecg.record import EcgRecord
from datasets.vocabulary.sop import ECG_SOP_CLASSES
from serving import logs, metrics
from serving.config import ServingConfig
from serving.ingest import validate
from serving.ingest.ecg import CROSS_SITE_REASON, EcgWorkflow, SiteError, refuse_cross_site
from serving.ingest.validate import IngestLimits
from serving.privacy import mask_id, mask_name
from serving.store.db import Database, DicomAttributes, NewInstance
from serving.store.objects import ObjectStore
from serving.store.queries import set_no_ai_read, study_site
from serving.store.schema import NO_AI_READ, RECEIVED
from serving.store.work import WorkQueue

log = logging.getLogger("preread.dicom.ingest")

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class DicomInputError(ValueError):
    """The object is not acceptable. ``reason`` says why (for the DIMSE Error Comment / STOW-RS
    FailureReason); ``status`` is the DIMSE / STOW failure code."""

    def __init__(
        self, reason: str, status: int = 0xC000, sop_class_uid: str | None = None, sop_instance_uid: str | None = None
    ):
        super().__init__(reason)
        self.reason, self.status = reason, status
        self.sop_class_uid, self.sop_instance_uid = sop_class_uid, sop_instance_uid


@dataclass(frozen=True)
class Arrival:
    """How an object came in: for which site, by which way (``source``: scp, stow, ...), sent by whom
    (the calling AE or user; None: the way itself), and what the sender asked for (no automated read;
    the priority, a triage level)."""

    site: str
    source: str
    sender: str | None
    no_ai: bool = False
    priority: str | None = None


@dataclass
class DicomAccepted:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    site: str
    created: bool
    study_status: str
    ecg_record: EcgRecord | None = None  # set for a newly accepted ECG: the caller reads it


def _text(ds: Dataset, keyword: str, n: int = 64) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    return str(value).strip()[:n] or None


def validate_dicom(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, limits: IngestLimits | None = None) -> Dataset:
    """Bytes (a DICOM Part 10 file) → a fully parsed Dataset, or DicomInputError naming the problem with a
    status that tells the sender not to resend (the one validator: serving/ingest/validate.py)."""
    limits = limits or IngestLimits(max_object_bytes=max_bytes)
    try:
        checked = validate.validate_dicom(data, limits)
    except validate.IngestRefused as exc:
        raise DicomInputError(f"{exc.field}: {exc.reason}", exc.dimse_status, *_identity(data)) from exc
    for warning in checked.warnings:
        log.warning("accepted with a warning: %s", warning)
    return checked.dataset


def _identity(data: bytes) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs of a refused object, for the failure answer (when they are readable)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return _uid_or_none(ds.get("SOPClassUID")), _uid_or_none(ds.get("SOPInstanceUID"))
    except Exception:  # noqa: BLE001 - the object is refused already; its identity is a courtesy
        return None, None


def _uid_or_none(value) -> str | None:
    try:
        return validate.check_uid(value, "uid") if value else None
    except validate.IngestRefused:
        return None


class DicomIngest:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        ecg: EcgWorkflow | None,
        sites: set[str],
        mask_names: bool = True,
        mask_ids: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        queue: WorkQueue | None = None,
        limits: IngestLimits | None = None,
    ):
        self.db, self.store, self.ecg = db, store, ecg
        self.sites = sites
        self.mask_names, self.mask_ids, self.max_bytes = mask_names, mask_ids, max_bytes
        self.limits = limits or IngestLimits(max_object_bytes=max_bytes)
        self.queue = queue  # told of each new original, to wake the dispatcher

    @classmethod
    def from_config(cls, cfg: ServingConfig, db: Database, store: ObjectStore, ecg: EcgWorkflow) -> DicomIngest:
        return cls(
            db,
            store,
            ecg,
            cfg.site_ids(),
            cfg.privacy.mask_patient_names,
            cfg.privacy.mask_patient_ids,
            cfg.dicom.max_instance_bytes,
            ecg.queue,
            IngestLimits.from_config(cfg),
        )

    def validate(self, data: bytes) -> Dataset:
        """The one validator with this deployment's limits (DicomInputError when refused)."""
        return validate_dicom(data, limits=self.limits)

    def accept(
        self,
        data: bytes,
        site: str,
        source: str,
        sender: str | None,
        dataset: Dataset | None = None,
        role: str = "original",
        no_ai: bool = False,
        priority: str | None = None,
    ) -> DicomAccepted:
        """Validate, store durably, record. Raises DicomInputError (bad object; nothing stored),
        StorageUnavailable (retry later) or a database error (nothing acknowledged). ``no_ai``: the
        patient declined the automated read; ``priority``: how soon it should be read (a level),
        kept with the study."""
        if site not in self.sites:
            raise DicomInputError(f"site {site!r} is not configured", 0x0110)
        try:
            ds = dataset if dataset is not None else self.validate(data)
        except DicomInputError:
            metrics.REJECTED.labels("DICOM", "object").inc()
            raise
        arrival = Arrival(site, source, sender, no_ai, priority)
        repeat = self._repeat_or_cross_site(ds, arrival)
        if repeat is not None:
            return repeat
        if str(ds.SOPClassUID) in ECG_SOP_CLASSES and role == "original" and self.ecg is not None:
            return self._accept_ecg(data, ds, arrival)
        return self._store(data, ds, arrival, role, RECEIVED, None)

    def _repeat_or_cross_site(self, ds: Dataset, arrival: Arrival) -> DicomAccepted | None:
        """An object already stored is answered as it was (nothing stored again); an object of a study that
        another site sent is refused and audited (0x0110). None: a new object for this site."""
        sop_class, sop_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        site, who, source = arrival.site, arrival.sender or arrival.source, arrival.source
        existing = self.db.find_instance(sop_uid)
        if existing is not None:
            study = existing[0]
            if study.site != site:
                refuse_cross_site(self.db, site, study.site, who, study.study_uid, sop_uid, source)
                raise DicomInputError(CROSS_SITE_REASON, 0x0110, sop_class, sop_uid)
            return DicomAccepted(
                study.study_uid, existing[1].series_uid or series_uid, sop_uid, sop_class, site, False, study.status
            )
        owner = study_site(self.db, study_uid)
        if owner is not None and owner != site:
            refuse_cross_site(self.db, site, owner, who, study_uid, sop_uid, source)
            raise DicomInputError(CROSS_SITE_REASON, 0x0110, sop_class, sop_uid)
        return None

    def _accept_ecg(self, data: bytes, ds: Dataset, arrival: Arrival) -> DicomAccepted:
        """A DICOM waveform ECG goes in through the ECG workflow (its record is read at once); one the ECG
        reader cannot parse is stored as an original listed as no_ai_read, with the reason."""
        sop_class, sop_uid, series_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)
        try:
            record = self.ecg.parse(data, "application/dicom", None, dicom_checked=True)
        except EcgInputError as exc:
            log.warning("ECG object %s not readable as a 12-lead ECG (%s): stored without AI read", sop_uid, exc)
            reason = f"ECG not readable by the ECG model: {exc.field}: {exc.reason}"
            return self._store(data, ds, arrival, "original", NO_AI_READ, reason)
        try:
            accepted = self.ecg.accept(
                data, record, arrival.site, sender=arrival.sender or arrival.source, no_ai=arrival.no_ai
            )
        except SiteError as exc:
            raise DicomInputError(exc.reason, 0x0110, sop_class, sop_uid) from exc
        study = accepted.study
        if accepted.created:
            metrics.INGESTED.labels("ECG", arrival.source).inc()
        return DicomAccepted(
            study.study_uid,
            series_uid,
            sop_uid,
            sop_class,
            arrival.site,
            accepted.created,
            study.status,
            record if accepted.created and not study.no_ai else None,
        )

    def _patient_key(self, site: str, ds: Dataset, patient_id: str | None, patient_name: str | None) -> str | None:
        """Who the patient is for priors (the ECG workflow's keyer, made before masking)."""
        keyer = self.ecg.patient_key if self.ecg is not None else None
        if keyer is None:
            return None
        return keyer(
            site=site,
            patient_id=patient_id,
            issuer=_text(ds, "IssuerOfPatientID"),
            name=patient_name,
            birth_date=_text(ds, "PatientBirthDate", 8),
            sex=_text(ds, "PatientSex", 8),
        )

    def _store(
        self, data: bytes, ds: Dataset, arrival: Arrival, role: str, status: str, error: str | None
    ) -> DicomAccepted:
        """The object stored durably and recorded as ``role`` with ``status`` (``error``: why no model
        reads it); the work queue is told of a new original it should read."""
        site, source = arrival.site, arrival.source
        stored = self.store.put(data, ".dcm")
        modality = (_text(ds, "Modality", 16) or "OT").upper()
        patient_id, patient_name = _text(ds, "PatientID"), _text(ds, "PatientName", 128)
        logs.redact.remember_patient(patient_name, patient_id)
        description = _text(ds, "StudyDescription", 256) or _text(ds, "SeriesDescription", 256)
        new = NewInstance(
            sop_instance_uid=str(ds.SOPInstanceUID),
            study_uid=str(ds.StudyInstanceUID),
            site=site,
            modality=modality,
            content_type="application/dicom",
            storage_key=stored.key,
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            source=source,
            sender=arrival.sender,
            series_uid=str(ds.SeriesInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            patient_id=(mask_id(patient_id) if self.mask_ids else patient_id) if patient_id else None,
            patient_name=(mask_name(patient_name) if self.mask_names else patient_name) if patient_name else None,
            patient_key=self._patient_key(site, ds, patient_id, patient_name),
            patient_sex=_text(ds, "PatientSex", 8),
            patient_age=_text(ds, "PatientAge", 16),
            description=description,
            status=status,
            no_ai=arrival.no_ai,
            priority=arrival.priority,
        )
        attrs = DicomAttributes(
            modality=modality,
            body_part=(_text(ds, "BodyPartExamined") or "").upper() or None,
            view_position=(_text(ds, "ViewPosition", 16) or "").upper() or None,
            role=role,
            study_date=_text(ds, "StudyDate", 8),
            accession_number=_text(ds, "AccessionNumber"),
        )
        study, _, created = self.db.accept_instance(new, attrs)
        if created and role == "original":
            metrics.INGESTED.labels(modality, source).inc()
            if self.queue is not None and study.status == RECEIVED:
                self.queue.arrived(modality)
        if created and error and study.status == NO_AI_READ and not study.ai_error:
            set_no_ai_read(self.db, study.study_uid, error)
        return DicomAccepted(
            study.study_uid, new.series_uid, new.sop_instance_uid, new.sop_class_uid, site, created, study.status
        )


def encode(ds: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

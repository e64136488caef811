"""One DICOM object from bytes to a stored, listed instance (no Ray, no network).

validate (parses fully; truncated, absurd declared lengths, non-DICOM, missing UIDs → DicomInputError
with the reason) → ObjectStore.put (fsync'd) → DB row committed (patient fields masked as on the ECG
path) → only then does the caller acknowledge. Idempotent on the SOP Instance UID. 12-lead / general
ECG waveforms take the ECG path (EcgWorkflow accept; the caller then runs the read).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError

from datasets.ecg.errors import EcgInputError
from datasets.ecg.record import EcgRecord
from datasets.vocabulary.sop import ECG_SOP_CLASSES
from serving import logs, metrics
from serving.config import ServingConfig
from serving.ingest.ecg import EcgWorkflow, SiteError
from serving.privacy import mask_id, mask_name
from serving.store.db import Database, DicomAttributes, NewInstance
from serving.store.objects import ObjectStore
from serving.store.queries import set_no_ai_read, study_site
from serving.store.schema import NO_AI_READ, RECEIVED
from serving.store.work import WorkQueue

log = logging.getLogger("preread.dicom.ingest")

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class DicomInputError(ValueError):
    """The object is not acceptable. ``reason`` says why (for the DIMSE Error Comment / STOW-RS
    FailureReason); ``status`` is the DIMSE / STOW failure code."""

    def __init__(self, reason: str, status: int = 0xC000, sop_class_uid: str | None = None,
                 sop_instance_uid: str | None = None):
        super().__init__(reason)
        self.reason, self.status = reason, status
        self.sop_class_uid, self.sop_instance_uid = sop_class_uid, sop_instance_uid


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


def validate_dicom(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Dataset:
    """Bytes (a DICOM Part 10 file) → a fully parsed Dataset, or DicomInputError naming the problem."""
    if not data:
        raise DicomInputError("empty object")
    if len(data) > max_bytes:
        raise DicomInputError(f"object of {len(data)} bytes exceeds the limit of {max_bytes} bytes", 0xA700)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise DicomInputError(f"not DICOM: {exc}") from exc
    except Exception as exc:  # pydicom raises many kinds on garbage
        raise DicomInputError(f"undecodable DICOM: {type(exc).__name__}: {exc}") from exc
    sop_class = _text(ds, "SOPClassUID") if "SOPClassUID" in ds._dict else None
    sop_uid = _text(ds, "SOPInstanceUID") if "SOPInstanceUID" in ds._dict else None

    def fail(reason: str, status: int = 0xC000):
        return DicomInputError(reason, status, sop_class, sop_uid)

    # A declared length longer than what follows: pydicom reads what is there without a word.
    for tag, elem in list(ds._dict.items()):
        length, value = getattr(elem, "length", None), getattr(elem, "value", None)
        if isinstance(value, (bytes, bytearray)) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            raise fail(f"truncated: element {pydicom.tag.Tag(tag)} declares {length} bytes, only {len(value)} present")
    try:
        for elem in ds.iterall():  # converts every raw element: malformed values raise here
            _ = elem.value
    except Exception as exc:
        raise fail(f"undecodable element: {type(exc).__name__}: {exc}") from exc
    for keyword in REQUIRED_UIDS:
        value = ds.get(keyword)
        if not value:
            raise fail(f"missing {keyword}")
        if len(str(value)) > 64 or not _UID.match(str(value)):
            raise fail(f"{keyword} {str(value)[:70]!r} is not a valid UID")
    _check_pixels(ds, fail)
    return ds


def _check_pixels(ds: Dataset, fail) -> None:
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if "Rows" in ds and "Columns" in ds and not has_pixels:
        raise fail("image header without Pixel Data (truncated object?)")
    if "PixelData" not in ds:
        return
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    pixel_data = ds.PixelData
    try:
        encapsulated = syntax is not None and syntax.is_encapsulated
    except ValueError as exc:  # a UID in the meta that is not a transfer syntax (the fuzzer found it)
        raise fail(f"Transfer Syntax UID {str(syntax)[:64]!r} is not a transfer syntax") from exc
    if encapsulated:
        try:
            fragments = sum(1 for _ in generate_fragments(pixel_data))
        except Exception as exc:
            raise fail(f"encapsulated Pixel Data is malformed: {exc}") from exc
        if fragments < 2:  # the Basic Offset Table item + at least one fragment
            raise fail("encapsulated Pixel Data has no fragments (truncated?)")
        return
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise fail(f"image attributes missing or malformed: {exc}") from exc
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        expected = expected * 2 // 3
    if len(pixel_data) < expected:
        raise fail(f"truncated: Pixel Data has {len(pixel_data)} bytes, {rows}x{cols}x{samples}x{frames} "
                   f"at {bits} bits needs {expected}")


class DicomIngest:
    def __init__(self, db: Database, store: ObjectStore, ecg: EcgWorkflow | None, sites: set[str],
                 mask_names: bool = True, mask_ids: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
                 queue: WorkQueue | None = None):
        self.db, self.store, self.ecg = db, store, ecg
        self.sites = sites
        self.mask_names, self.mask_ids, self.max_bytes = mask_names, mask_ids, max_bytes
        self.queue = queue  # told of each new original, to wake the dispatcher

    @classmethod
    def from_config(cls, cfg: ServingConfig, db: Database, store: ObjectStore, ecg: EcgWorkflow) -> DicomIngest:
        return cls(db, store, ecg, cfg.site_ids(), cfg.privacy.mask_patient_names, cfg.privacy.mask_patient_ids,
                   cfg.dicom.max_instance_bytes, ecg.queue)

    def accept(self, data: bytes, site: str, source: str, sender: str | None,
               dataset: Dataset | None = None, role: str = "original", no_ai: bool = False,
               priority: str | None = None) -> DicomAccepted:
        """Validate, store durably, record. Raises DicomInputError (bad object; nothing stored),
        StorageUnavailable (retry later) or a database error (nothing acknowledged). ``no_ai``: the
        patient declined the automated read; ``priority``: how soon it should be read (a level),
        kept with the study."""
        if site not in self.sites:
            raise DicomInputError(f"site {site!r} is not configured", 0x0110)
        try:
            ds = dataset if dataset is not None else validate_dicom(data, self.max_bytes)
        except DicomInputError:
            metrics.REJECTED.labels("DICOM", "object").inc()
            raise
        sop_class, sop_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)

        existing = self.db.find_instance(sop_uid)
        if existing is not None:
            study = existing[0]
            if study.site != site:
                raise DicomInputError(f"SOP instance {sop_uid} already belongs to another site", 0x0110,
                                      sop_class, sop_uid)
            return DicomAccepted(study.study_uid, existing[1].series_uid or series_uid, sop_uid, sop_class,
                                 site, False, study.status)
        owner = study_site(self.db, study_uid)
        if owner is not None and owner != site:
            raise DicomInputError(f"study {study_uid} belongs to another site", 0x0110, sop_class, sop_uid)

        if sop_class in ECG_SOP_CLASSES and role == "original" and self.ecg is not None:
            try:
                record = self.ecg.parse(data, "application/dicom", None)
            except EcgInputError as exc:
                log.warning("ECG object %s not readable as a 12-lead ECG (%s): stored without AI read", sop_uid, exc)
                return self._store(data, ds, site, source, sender, role, NO_AI_READ,
                                   f"ECG not readable by the ECG model: {exc.field}: {exc.reason}", no_ai, priority)
            try:
                accepted = self.ecg.accept(data, record, site, sender=sender or source, no_ai=no_ai)
            except SiteError as exc:
                raise DicomInputError(exc.reason, 0x0110, sop_class, sop_uid) from exc
            study = accepted.study
            if accepted.created:
                metrics.INGESTED.labels("ECG", source).inc()
            return DicomAccepted(study.study_uid, series_uid, sop_uid, sop_class, site, accepted.created,
                                 study.status, record if accepted.created and not study.no_ai else None)
        return self._store(data, ds, site, source, sender, role, RECEIVED, None, no_ai, priority)

    def _store(self, data: bytes, ds: Dataset, site: str, source: str, sender: str | None, role: str,
               status: str, error: str | None, no_ai: bool = False, priority: str | None = None) -> DicomAccepted:
        stored = self.store.put(data, ".dcm")
        modality = (_text(ds, "Modality", 16) or "OT").upper()
        patient_id, patient_name = _text(ds, "PatientID"), _text(ds, "PatientName", 128)
        logs.redact.remember_patient(patient_name, patient_id)
        description = _text(ds, "StudyDescription", 256) or _text(ds, "SeriesDescription", 256)
        new = NewInstance(
            sop_instance_uid=str(ds.SOPInstanceUID), study_uid=str(ds.StudyInstanceUID), site=site,
            modality=modality, content_type="application/dicom", storage_key=stored.key,
            sha256=stored.sha256, size_bytes=stored.size_bytes, source=source, sender=sender,
            series_uid=str(ds.SeriesInstanceUID), sop_class_uid=str(ds.SOPClassUID),
            patient_id=(mask_id(patient_id) if self.mask_ids else patient_id) if patient_id else None,
            patient_name=(mask_name(patient_name) if self.mask_names else patient_name) if patient_name else None,
            patient_sex=_text(ds, "PatientSex", 8), patient_age=_text(ds, "PatientAge", 16),
            description=description, status=status, no_ai=no_ai, priority=priority,
        )
        attrs = DicomAttributes(
            modality=modality, body_part=(_text(ds, "BodyPartExamined") or "").upper() or None,
            view_position=(_text(ds, "ViewPosition", 16) or "").upper() or None, role=role,
            study_date=_text(ds, "StudyDate", 8), accession_number=_text(ds, "AccessionNumber"),
        )
        study, _, created = self.db.accept_instance(new, attrs)
        if created and role == "original":
            metrics.INGESTED.labels(modality, source).inc()
            if self.queue is not None and study.status == RECEIVED:
                self.queue.arrived(modality)
        if created and error and study.status == NO_AI_READ and not study.ai_error:
            set_no_ai_read(self.db, study.study_uid, error)
        return DicomAccepted(study.study_uid, new.series_uid, new.sop_instance_uid, new.sop_class_uid, site,
                             created, study.status)


def encode(ds: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

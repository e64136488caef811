"""What one queued thing is: a DICOM instance, or an ECG file for `POST /api/v1/ecg` (a WFDB record
zipped, JSON, vendor XML). ``identify`` reads just enough of the bytes to name the thing and the
key it is idempotent on (the SOP Instance UID for DICOM, the content hash otherwise); anything it
cannot read raises ParcelError with the reason, and the caller quarantines the file."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from xml.etree import ElementTree

import pydicom
from pydicom.errors import InvalidDicomError

ECG_WAVEFORM_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG Waveform Storage
}
WFDB_SIGNAL_SUFFIXES = (".mat", ".dat")


class ParcelError(ValueError):
    """The bytes are not something the sender can send; ``reason`` says why, for the quarantine note."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Kind(StrEnum):
    DICOM = "dicom"  # STOW-RS
    ECG_ZIP = "ecg-zip"  # POST /api/v1/ecg, application/zip (WFDB .hea + signal files)
    ECG_JSON = "ecg-json"  # POST /api/v1/ecg, application/json
    ECG_XML = "ecg-xml"  # POST /api/v1/ecg, application/xml (vendor formats the service may read)

    @property
    def media_type(self) -> str:
        return {
            Kind.DICOM: "application/dicom",
            Kind.ECG_ZIP: "application/zip",
            Kind.ECG_JSON: "application/json",
            Kind.ECG_XML: "application/xml",
        }[self]


@dataclass(frozen=True)
class Parcel:
    kind: Kind
    key: str  # what the queue is idempotent on
    sha256: str
    data: bytes
    label: str  # for people: the file name, or the calling AE
    study_uid: str | None = None  # DICOM only; an ECG file's study UID comes back from the service
    sop_uid: str | None = None
    modality: str = "ECG"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def identify(data: bytes, label: str) -> Parcel:
    """The parcel in ``data`` (a file's bytes; ``label`` its name). Raises ParcelError."""
    if not data:
        raise ParcelError("empty file")
    digest = sha256(data)
    if data[128:132] == b"DICM" or label.lower().endswith(".dcm"):
        return _dicom(data, label, digest)
    if data[:4] == b"PK\x03\x04":
        _check_wfdb_zip(data)
        return Parcel(Kind.ECG_ZIP, f"sha256:{digest}", digest, data, label)
    head = data[:64].lstrip()
    if head[:1] == b"{":
        _check_ecg_json(data)
        return Parcel(Kind.ECG_JSON, f"sha256:{digest}", digest, data, label)
    if head[:1] == b"<":
        try:
            ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise ParcelError(f"XML that does not parse: {exc}") from None
        return Parcel(Kind.ECG_XML, f"sha256:{digest}", digest, data, label)
    return _dicom(data, label, digest)  # a DICOM stream without the preamble, or nothing we know


def _dicom(data: bytes, label: str, digest: str) -> Parcel:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=data[128:132] != b"DICM")
        sop_uid, study_uid = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    except (InvalidDicomError, AttributeError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParcelError(
            "not a file the sender knows: neither DICOM (with SOP Instance and Study Instance "
            f"UIDs), a WFDB zip, ECG JSON nor XML ({type(exc).__name__}: {exc})"
        ) from None
    if not sop_uid or not study_uid:
        raise ParcelError("DICOM without a SOP Instance UID or Study Instance UID")
    modality = str(ds.get("Modality", "") or ("ECG" if sop_class in ECG_WAVEFORM_SOP_CLASSES else "OT"))
    return Parcel(Kind.DICOM, sop_uid, digest, data, label, study_uid=study_uid, sop_uid=sop_uid, modality=modality)


def _check_wfdb_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ParcelError(f"a zip that cannot be read: {exc}") from None
    if bad is not None:
        raise ParcelError(f"a zip with a corrupt member: {bad}")
    if not any(n.lower().endswith(".hea") for n in names):
        raise ParcelError("a zip without a WFDB header (.hea): not an ECG record")


def _check_ecg_json(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParcelError(f"JSON that does not parse: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("leads"), dict) or "sampling_rate" not in doc:
        raise ParcelError('JSON that is not an ECG: needs {"sampling_rate": Hz, "leads": {...}}')


def wfdb_files(header_text: str, record: str) -> list[str]:
    """The signal files a WFDB header names (the first field of each signal line)."""
    lines = [ln.strip() for ln in header_text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ParcelError(f"WFDB header of {record} is empty")
    try:
        count = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ParcelError(f"WFDB header of {record} has no signal count on its first line") from None
    return sorted({ln.split()[0] for ln in lines[1 : 1 + count]})


def zip_record(files: dict[str, bytes]) -> bytes:
    """A WFDB record's files as one deterministic zip (same files → same bytes → same key)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()

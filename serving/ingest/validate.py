"""The one ingest validator: every way in (HTTP ECG, STOW-RS, C-STORE) asks it before storing anything.

What it refuses can never succeed, so the refusal says "do not resend": a DICOM failure status in the
0xA9xx/0xC0xx range (never 0xA700, "out of resources", which makes a modality retry forever), STOW-RS
409 with the reason, HTTP 422 with the field and the reason. Checks:

- UIDs: digits and dots, no leading zeros, at most 64 characters (``../../etc/passwd``, a 5,002-character
  UID or ``<img src=x onerror=...>`` never reach a path, a page or a query);
- text attributes bounded by their VR (PS3.5 table 6.2-1): a value more than ``GROSS_FACTOR`` times its
  VR's maximum is refused (a 1 MB patient name); a value a little over is kept, truncated where it is
  stored, with a warning;
- images: Rows, Columns, BitsAllocated, BitsStored, SamplesPerPixel and NumberOfFrames sane (no 0x0
  image, no BitsAllocated 0), Pixel Data as long as they declare, and what decoding would allocate
  bounded (``IngestLimits.max_decoded_bytes``);
- transfer syntax: a known one; a waveform (ECG) only in an uncompressed one;
- ECG records: sampling rate finite and positive, duration within a resting ECG's maximum.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from datasets.ecg.record import EcgRecord
from datasets.vocabulary.sop import ECG_SOP_CLASSES

MAX_UID_LENGTH = 64
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")

# Maximum characters per value (PS3.5 table 6.2-1). PN: 64 per component group, three groups.
VR_MAX_CHARS: dict[str, int] = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 3 * 64 + 2,
    "SH": 16,
    "ST": 1024,
    "TM": 16,
    "UI": MAX_UID_LENGTH,
}
GROSS_FACTOR = 4  # beyond this many times the VR's maximum a value is refused, not truncated
# Free-form ECG upload fields (JSON / WFDB) take the VR of the DICOM attribute they become.
PATIENT_FIELD_VR = {"name": "PN", "id": "LO", "sex": "CS", "age": "AS"}  # others (birth_date, ISO): LO
ECG_META_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid")

# Waveforms are never encapsulated: these are the syntaxes a 12-lead ECG object may come in.
WAVEFORM_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2",
    }
)
VALID_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})

# DIMSE statuses that tell the sender not to resend (PS3.4 B.2.3): 0xA900 "Data Set does not match
# SOP Class", 0xC000 "Cannot understand". 0xA700 (out of resources) is only for what may succeed later.
STATUS_DOES_NOT_MATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


class IngestRefused(ValueError):
    """The object can never be accepted as sent. ``field`` names what is wrong, ``reason`` says why in
    words a clinic can act on, ``dimse_status`` is the C-STORE failure status (a "do not resend" one)."""

    def __init__(self, field: str, reason: str, dimse_status: int = STATUS_CANNOT_UNDERSTAND):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.dimse_status = field, reason, dimse_status

    def __reduce__(self):  # keeps its parts when pickled across Ray workers
        return (type(self), (self.field, self.reason, self.dimse_status))


@dataclass(frozen=True)
class IngestLimits:
    """What one object may be: its size, what decoding its pixels would allocate, an ECG's duration."""

    max_object_bytes: int = 512 * 1024 * 1024
    max_decoded_bytes: int = 1024 * 1024 * 1024
    max_ecg_seconds: float = 60.0

    @classmethod
    def from_config(cls, cfg: Any) -> IngestLimits:
        return cls(
            max_object_bytes=cfg.dicom.max_instance_bytes,
            max_decoded_bytes=cfg.limits.max_decoded_bytes,
            max_ecg_seconds=cfg.limits.max_ecg_seconds,
        )


@dataclass
class Checked:
    """An accepted object's parsed dataset (None for a non-DICOM ECG) and the warnings about it."""

    dataset: Dataset | None = None
    warnings: list[str] = field(default_factory=list)


# --- single values ---------------------------------------------------------------------------------


def check_uid(value: Any, name: str) -> str:
    """``value`` as a UID string, or IngestRefused naming the attribute (the value is never echoed
    whole: it may be 5,000 characters or markup)."""
    text = str(value).strip().rstrip("\x00") if value is not None else ""
    if not text:
        raise IngestRefused(name, "missing")
    if len(text) > MAX_UID_LENGTH:
        raise IngestRefused(name, f"is {len(text)} characters long; a UID has at most {MAX_UID_LENGTH}")
    if not _UID.match(text):
        raise IngestRefused(
            name,
            "is not a valid UID (digits and dots only, no leading zeros, "
            f"at most {MAX_UID_LENGTH} characters): {_preview(text)}",
        )
    return text


def check_text(value: Any, vr: str, name: str) -> str | None:
    """None when ``value`` fits its VR; a warning when it is over but within GROSS_FACTOR times (it is
    truncated where stored); IngestRefused beyond that."""
    limit = VR_MAX_CHARS.get(vr)
    if limit is None or value is None:
        return None
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    longest = max((len(str(v)) for v in values), default=0)
    if longest <= limit:
        return None
    if longest > GROSS_FACTOR * limit:
        raise IngestRefused(name, f"is {longest:,} characters long; {vr} allows at most {limit}", STATUS_DOES_NOT_MATCH)
    return f"{name} is {longest} characters long ({vr} allows {limit}): truncated where stored"


def _preview(text: str, n: int = 24) -> str:
    shown = text[:n].encode("unicode_escape").decode("ascii")
    return repr(shown + ("…" if len(text) > n else ""))


# --- DICOM -----------------------------------------------------------------------------------------


def parse_dicom(data: bytes, limits: IngestLimits) -> Dataset:
    """Bytes (a DICOM Part 10 file) → a fully parsed Dataset, or IngestRefused saying why not."""
    if not data:
        raise IngestRefused("object", "empty object")
    if len(data) > limits.max_object_bytes:
        raise IngestRefused("object", f"{len(data)} bytes exceeds the limit of {limits.max_object_bytes} bytes")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise IngestRefused("object", f"not DICOM: {exc}") from exc
    except Exception as exc:  # pydicom raises many kinds on garbage
        raise IngestRefused("object", f"undecodable DICOM: {type(exc).__name__}: {str(exc)[:200]}") from exc
    # A declared length longer than what follows: pydicom reads what is there without a word.
    for tag, elem in list(ds._dict.items()):
        length, value = getattr(elem, "length", None), getattr(elem, "value", None)
        if isinstance(value, (bytes, bytearray)) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            raise IngestRefused(
                str(pydicom.tag.Tag(tag)), f"truncated: declares {length} bytes, only {len(value)} present"
            )
    try:
        for elem in ds.iterall():  # converts every raw element: malformed values raise here
            _ = elem.value
    except Exception as exc:
        raise IngestRefused("object", f"undecodable element: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return ds


def check_dataset(ds: Dataset, limits: IngestLimits) -> list[str]:
    """Every check on a parsed dataset; returns the warnings, raises IngestRefused."""
    for keyword in REQUIRED_UIDS:
        check_uid(ds.get(keyword), keyword)
    _check_transfer_syntax(ds)
    warnings = [w for w in _text_warnings(ds.iterall()) if w]
    _check_image(ds, limits)
    return warnings


def validate_dicom(data: bytes, limits: IngestLimits | None = None) -> Checked:
    """Parse and check one DICOM object: the validator of STOW-RS, C-STORE and DICOM ECG uploads."""
    limits = limits or IngestLimits()
    ds = parse_dicom(data, limits)
    return Checked(ds, check_dataset(ds, limits))


def _text_warnings(elements: Iterable) -> Iterable[str | None]:
    for elem in elements:
        vr = elem.VR
        if vr == "UN" and dictionary_has_tag(elem.tag):
            # a value too long for its VR's 16-bit length is written (and read back) as UN
            vr = dictionary_VR(elem.tag)
        if vr in VR_MAX_CHARS and elem.value not in (None, "", b""):
            yield check_text(elem.value, vr, elem.keyword or str(elem.tag))


def _check_transfer_syntax(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        return  # a dataset built in memory (C-STORE: the association's context says how it came)
    syntax = UID(str(syntax))
    if not syntax.is_transfer_syntax:
        raise IngestRefused("TransferSyntaxUID", f"{_preview(str(syntax), 64)} is not a known transfer syntax")
    if str(ds.get("SOPClassUID", "")) in ECG_SOP_CLASSES and str(syntax) not in WAVEFORM_SYNTAXES:
        raise IngestRefused(
            "TransferSyntaxUID",
            f"an ECG waveform cannot be sent in {syntax.name or syntax}; use Explicit or Implicit VR Little Endian",
            STATUS_DOES_NOT_MATCH,
        )


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise IngestRefused(keyword, f"missing or not a number: {_preview(str(value))}", STATUS_DOES_NOT_MATCH) from exc


def _check_image(ds: Dataset, limits: IngestLimits) -> None:
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if "Rows" in ds and "Columns" in ds and not has_pixels:
        raise IngestRefused("PixelData", "image header without Pixel Data (truncated object?)")
    if "PixelData" not in ds:
        return
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    bits, stored = _int(ds, "BitsAllocated"), _int(ds, "BitsStored", ds.get("BitsAllocated"))
    samples, frames = _int(ds, "SamplesPerPixel", 1), _int(ds, "NumberOfFrames", 1) or 1
    fail = STATUS_DOES_NOT_MATCH
    if rows < 1 or cols < 1:
        raise IngestRefused("Rows/Columns", f"a {rows}x{cols} image has no pixels", fail)
    if bits not in VALID_BITS_ALLOCATED:
        raise IngestRefused("BitsAllocated", f"{bits} is not 1, 8, 16, 32 or 64", fail)
    if not 1 <= stored <= bits:
        raise IngestRefused("BitsStored", f"{stored} is not between 1 and BitsAllocated ({bits})", fail)
    if samples not in (1, 3, 4) or frames < 1:
        raise IngestRefused("SamplesPerPixel/NumberOfFrames", f"{samples} samples, {frames} frames", fail)
    decoded = (rows * cols * samples * frames * bits + 7) // 8
    if decoded > limits.max_decoded_bytes:
        raise IngestRefused(
            "PixelData",
            f"{rows}x{cols}x{samples}x{frames} at {bits} bits would decode to "
            f"{decoded:,} bytes; the limit is {limits.max_decoded_bytes:,}",
            fail,
        )
    _check_pixel_length(ds, rows, cols, samples, frames, bits)


def _check_pixel_length(ds: Dataset, rows: int, cols: int, samples: int, frames: int, bits: int) -> None:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    pixel_data = ds.PixelData
    if syntax is not None and UID(str(syntax)).is_encapsulated:
        try:
            fragments = sum(1 for _ in generate_fragments(pixel_data))
        except Exception as exc:
            raise IngestRefused("PixelData", f"encapsulated Pixel Data is malformed: {str(exc)[:200]}") from exc
        if fragments < 2:  # the Basic Offset Table item + at least one fragment
            raise IngestRefused("PixelData", "encapsulated Pixel Data has no fragments (truncated?)")
        return
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        expected = expected * 2 // 3
    if len(pixel_data) < expected:
        raise IngestRefused(
            "PixelData",
            f"truncated: {len(pixel_data)} bytes, {rows}x{cols}x{samples}x{frames} at {bits} bits needs {expected}",
            STATUS_DOES_NOT_MATCH,
        )


# --- ECG records (every format) --------------------------------------------------------------------


def check_ecg_record(record: EcgRecord, limits: IngestLimits | None = None) -> list[str]:
    """The checks every ECG record passes whatever it came as (DICOM waveform, WFDB zip, JSON):
    UIDs it carries, sampling rate, duration, patient field lengths. Returns warnings."""
    limits = limits or IngestLimits()
    for key in ECG_META_UIDS:
        if record.meta.get(key) not in (None, ""):
            check_uid(record.meta[key], key)
    rate = record.sampling_rate
    try:
        rate = float(rate)
    except (TypeError, ValueError) as exc:
        raise IngestRefused("sampling_rate", "missing or not a number") from exc
    if not math.isfinite(rate) or rate <= 0:
        raise IngestRefused("sampling_rate", f"must be a positive number of samples per second, got {rate:g}")
    samples = int(getattr(record.signals, "shape", (0, 0))[-1]) if getattr(record.signals, "ndim", 0) else 0
    seconds = samples / rate
    if seconds > limits.max_ecg_seconds:
        raise IngestRefused(
            "duration",
            f"{seconds:.0f} s; a resting ECG is at most {limits.max_ecg_seconds:g} s "
            "(send a Holter or stress recording another way)",
        )
    warnings = []
    for key, value in (record.patient or {}).items():
        if len(str(key)) > 64:
            raise IngestRefused("patient", f"a field name of {len(str(key)):,} characters")
        if isinstance(value, (dict, list)):
            raise IngestRefused(f"patient.{key}", "expected text or a number")
        vr = PATIENT_FIELD_VR.get(str(key), "LO")
        warning = check_text(value, vr, f"patient.{key}")
        if warning:
            warnings.append(warning)
    return warnings

"""ECG readers: DICOM 12-lead waveform, WFDB record (PhysioNet/CinC layout) and JSON, all to EcgRecord.

Every reader returns an :class:`~datasets.ecg.record.EcgRecord` with signals in millivolts (float64,
one row per lead), lead names spelt as in ``STANDARD_LEADS`` and ``meta["format"]`` set to
``"dicom"``, ``"wfdb"`` or ``"json"``. Anything that cannot be read raises
:class:`~datasets.ecg.errors.EcgInputError` naming the offending field. Readers do not check that a
record is a usable 12-lead ECG (all leads present, rate, duration, amplitudes): that is
:func:`datasets.ecg.validate.validate_record`.

``read_ecg(body, content_type, filename)`` is the entry point for uploads: it recognises the format
from the bytes (DICOM preamble, zip magic, a JSON object) and the content type.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import re
import tempfile
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from datasets.ecg.errors import EcgInputError
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.vocabulary.sop import ECG_SOP_CLASSES

__all__ = [
    "normalize_lead_name",
    "read_dicom_waveform",
    "read_ecg",
    "read_json",
    "parse_cinc_comments",
    "read_wfdb",
]

# --------------------------------------------------------------------------------------------------
# Lead names

_LEAD_BY_UPPER = {name.upper(): name for name in STANDARD_LEADS}
# Spellings seen in the wild that are unambiguous ("DI/DII/DIII" in Latin-American/Spanish devices).
_LEAD_BY_UPPER.update({"DI": "I", "DII": "II", "DIII": "III"})

# DICOM CID 3001 "ECG Leads": SCPECG codes (scheme SCPECG) and ISO/IEEE 11073 MDC codes (scheme MDC).
_LEAD_BY_CODE = {}
for _number, _name in [(1, "I"), (2, "II"), (61, "III"), (62, "aVR"), (63, "aVL"), (64, "aVF"),
                       (3, "V1"), (4, "V2"), (5, "V3"), (6, "V4"), (7, "V5"), (8, "V6")]:
    _LEAD_BY_CODE[f"5.6.3-9-{_number}"] = _name
    _LEAD_BY_CODE[f"2:{_number}"] = _name

_PARENTHESIS = re.compile(r"\s*\(.*\)\s*$")


def normalize_lead_name(name: Any) -> str | None:
    """The STANDARD_LEADS spelling of a lead name, or None if it is not one of the 12 standard leads.

    Accepts "II", "avr"/"AVR" (→ "aVR"), "Lead I", "Lead I (Einthoven)", "Lead aVR",
    "MDC_ECG_LEAD_V1", DICOM code values "5.6.3-9-1" (SCPECG) / "2:1" (MDC), "DII".
    Non-standard leads ("V4R", "V7", "-aVR", "Pacing") give None.
    """
    if name is None:
        return None
    text = str(name).strip()
    if text in _LEAD_BY_CODE:
        return _LEAD_BY_CODE[text]
    upper = text.upper().replace("_", " ").strip()
    for prefix in ("MDC ECG LEAD ", "ECG LEAD ", "LEAD "):
        if upper.startswith(prefix):
            upper = upper[len(prefix):].strip()
            break
    upper = _PARENTHESIS.sub("", upper).replace(" ", "")
    return _LEAD_BY_UPPER.get(upper)


def _normalize_leads(names: list[str], field: str = "leads") -> tuple[str, ...]:
    """Normalise all names; unknown or duplicate leads raise EcgInputError(field)."""
    normalized = [normalize_lead_name(n) for n in names]
    unknown = [str(n) for n, m in zip(names, normalized) if m is None]
    if unknown:
        raise EcgInputError(
            field,
            f"unknown lead name(s) {', '.join(repr(u) for u in unknown)}; "
            f"expected the 12 standard leads {', '.join(STANDARD_LEADS)}",
        )
    seen: dict[str, str] = {}
    duplicates = []
    for raw, lead in zip(names, normalized):
        if lead in seen:
            duplicates.append(f"{seen[lead]!r} and {raw!r}" if seen[lead] != raw else repr(raw))
        seen[lead] = raw
    if duplicates:
        raise EcgInputError(field, f"lead given more than once: {'; '.join(duplicates)}")
    return tuple(normalized)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Units

def _mv_factor(unit: Any) -> float | None:
    """Multiplier from ``unit`` to millivolts (None if not a voltage unit we know)."""
    if unit is None:
        return None
    u = str(unit).strip().replace("µ", "u").replace("μ", "u").lower()
    return {
        "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
        "uv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
        "nv": 1e-6, "nanovolt": 1e-6, "nanovolts": 1e-6,
        "v": 1e3, "volt": 1e3, "volts": 1e3,
    }.get(u)


def _sex(value: Any) -> str | None:
    """'M' / 'F' / 'O' from DICOM codes or CinC words; None when unknown."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in ("m", "male", "man"):
        return "M"
    if v in ("f", "female", "woman"):
        return "F"
    if v in ("o", "other"):
        return "O"
    return None


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


# --------------------------------------------------------------------------------------------------
# DICOM waveform


_INTEGER_INTERPRETATIONS = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}


def _load_dicom(source: Any):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(source, pydicom.Dataset):
        return source
    size: int | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        fp: Any = io.BytesIO(data)
        size = len(data)
    elif isinstance(source, (str, Path)):
        fp = str(source)
    else:
        raise TypeError(f"read_dicom_waveform() takes bytes, a path or a pydicom Dataset, not {type(source).__name__}")
    try:
        ds = pydicom.dcmread(fp)
        if size is None:
            size = Path(fp).stat().st_size
        _check_not_truncated(ds, size)
        # Values are decoded lazily; touch the whole tree now so damage shows up here, as "file".
        ds.walk(lambda dataset, element: element.value)
    except EcgInputError:
        raise
    except InvalidDicomError:
        raise EcgInputError("file", "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except OSError as exc:
        if isinstance(source, (str, Path)):
            raise EcgInputError("file", f"cannot open {source}: {exc.strerror or exc}") from None
        raise EcgInputError("file", f"the DICOM file is damaged or truncated ({exc})") from None
    except Exception as exc:  # pydicom raises many types on damaged input (EOFError, struct.error, ...)
        raise EcgInputError("file", f"the DICOM file is damaged or truncated ({type(exc).__name__}: {exc})") from None
    return ds


def _check_not_truncated(ds, size: int) -> None:
    """pydicom reads a file cut inside its last element's value without complaint (the value is just
    short): compare the last top-level element's declared length with the bytes there are."""
    transfer_syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    tags = list(ds.keys())
    if not tags or transfer_syntax == "1.2.840.10008.1.2.1.99":  # deflated: positions are not file offsets
        return
    raw = ds.get_item(max(tags))
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length is None or tell is None or length == 0xFFFFFFFF:
        return
    if tell + length > size:
        raise EcgInputError(
            "file",
            f"the DICOM file is truncated: it ends {tell + length - size} byte(s) before the end of its last element",
        )


def _dicom_str(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _dicom_date(value: str | None) -> str | None:
    if value and re.fullmatch(r"\d{8}", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _dicom_datetime(value: str | None) -> str | None:
    """DICOM DT 'YYYYMMDDHHMMSS.FFFFFF&ZZXX' (any prefix) → ISO 8601 text; unparseable text kept as is."""
    if not value:
        return None
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?", value.strip())
    if not m:
        return value
    year, month, day, hour, minute, second, frac, tz = m.groups()
    text = year + (f"-{month}" if month else "") + (f"-{day}" if day else "")
    if hour:
        text += f"T{hour}:{minute or '00'}:{second or '00'}{frac or ''}"
        if tz:
            text += f"{tz[:3]}:{tz[3:]}"
    return text


def _dicom_age(age: str | None) -> int | float | None:
    """DICOM AS ('042Y', '006M', '003W', '010D') → age in years."""
    if not age:
        return None
    m = re.fullmatch(r"(\d{1,3})([YMWD])", age.strip().upper())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if unit == "Y":
        return n
    return round(n / {"M": 12.0, "W": 52.1775, "D": 365.25}[unit], 2)


def _age_from_dates(birth: str | None, on: str | None) -> int | None:
    if not birth or not on or not re.fullmatch(r"\d{8}", birth) or not re.match(r"\d{8}", on):
        return None
    try:
        b = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
        d = date(int(on[:4]), int(on[4:6]), int(on[6:8]))
    except ValueError:
        return None
    years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    return years if years >= 0 else None


def _select_rhythm_group(ds) -> int:
    groups = list(ds.WaveformSequence)
    labels = [str(g.get("MultiplexGroupLabel", "") or "").strip().upper() for g in groups]
    for i, label in enumerate(labels):
        if label == "RHYTHM":
            return i
    for i, label in enumerate(labels):
        if "MEDIAN" not in label:
            return i
    raise EcgInputError("WaveformSequence", "the file holds only median-beat waveforms, no rhythm recording")


def _channel_lead(channel) -> tuple[str | None, str]:
    """(standard lead name or None, a human description of the channel) for a ChannelDefinition item.

    Tries the channel source code value (SCPECG / MDC), its code meaning, then ChannelLabel."""
    code_value = code_meaning = None
    source = channel.get("ChannelSourceSequence")
    if source:
        code_value, code_meaning = source[0].get("CodeValue"), source[0].get("CodeMeaning")
    label = channel.get("ChannelLabel")
    for candidate in (code_value, code_meaning, label):
        lead = normalize_lead_name(candidate) if candidate else None
        if lead:
            return lead, str(candidate)
    return None, str(code_meaning or label or code_value or "unlabelled channel")


def read_dicom_waveform(source: Any) -> EcgRecord:
    """Read a DICOM ECG waveform object (12-lead or General ECG Waveform Storage) into an EcgRecord.

    Uses the rhythm multiplex group (MultiplexGroupLabel "RHYTHM", else the first group that is not
    a median beat). Sample values are converted per channel as
    ``raw × ChannelSensitivity × ChannelSensitivityCorrectionFactor + ChannelBaseline`` (PS3.3
    C.10.9.1.4.3; this is what ``Dataset.waveform_array`` computes), giving the quantity in the
    channel's ChannelSensitivityUnitsSequence unit (UCUM uV / mV / V), which is then scaled to mV.

    Args:
        source: the file as bytes, a path, or an already-read ``pydicom.Dataset``.

    Raises:
        EcgInputError: field "file" for non-DICOM, damaged or truncated input; "WaveformSequence" for
            a DICOM object without an ECG waveform; "SOPClassUID" for a non-ECG waveform (audio,
            hemodynamic ...); "leads" for unknown or duplicate lead channels; channel-level fields
            ("ChannelSensitivityUnitsSequence", "WaveformSampleInterpretation") for unusable encodings.
    """
    ds = _load_dicom(source)
    file_meta = getattr(ds, "file_meta", None)
    sop_class = _dicom_str(ds, "SOPClassUID") or (
        _dicom_str(file_meta, "MediaStorageSOPClassUID") if file_meta is not None else None
    )
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        # A file that stops at an element boundary parses cleanly: an ECG object without its
        # (type 1) waveform, or an object without even a SOP class, is a damaged upload.
        if not sop_class or sop_class in ECG_SOP_CLASSES:
            if not sop_class:
                raise EcgInputError("file", "the DICOM file is incomplete: no SOP Class UID and no waveform data (truncated upload?)")
            raise EcgInputError(
                "file",
                f"the DICOM file is incomplete: a {ECG_SOP_CLASSES[sop_class]} object without its waveform data (truncated upload?)",
            )
        raise EcgInputError(
            "WaveformSequence",
            f"this DICOM object ({_sop_class_name(sop_class)}) holds no waveform; "
            "send the ECG as DICOM 12-lead ECG Waveform Storage",
        )
    if sop_class and sop_class not in ECG_SOP_CLASSES:
        raise EcgInputError(
            "SOPClassUID",
            f"this DICOM waveform is a {_sop_class_name(sop_class)}, not an ECG "
            f"(expected {', '.join(ECG_SOP_CLASSES.values())})",
        )
    try:
        index = _select_rhythm_group(ds)
        group = ds.WaveformSequence[index]
        signals, leads, rate, units = _decode_group(ds, group, index)
    except EcgInputError:
        raise
    except Exception as exc:  # damaged element values surface here
        raise EcgInputError("file", f"the ECG waveform could not be decoded ({type(exc).__name__}: {exc})") from None

    patient: dict[str, Any] = {}
    if (value := _dicom_str(ds, "PatientID")):
        patient["id"] = value
    if (value := _dicom_str(ds, "PatientName")):
        patient["name"] = value
    if (value := _sex(_dicom_str(ds, "PatientSex"))):
        patient["sex"] = value
    birth = _dicom_str(ds, "PatientBirthDate")
    if birth:
        patient["birth_date"] = _dicom_date(birth)
    acquisition = _dicom_str(ds, "AcquisitionDateTime")
    if not acquisition and _dicom_str(ds, "AcquisitionDate"):
        acquisition = (_dicom_str(ds, "AcquisitionDate") or "") + (_dicom_str(ds, "AcquisitionTime") or "")
    age = _dicom_age(_dicom_str(ds, "PatientAge"))
    if age is None:
        age = _age_from_dates(birth, acquisition or _dicom_str(ds, "StudyDate"))
    if age is not None:
        patient["age"] = age

    meta: dict[str, Any] = {"format": "dicom"}
    for key, keyword in [
        ("sop_class_uid", "SOPClassUID"),
        ("study_instance_uid", "StudyInstanceUID"),
        ("series_instance_uid", "SeriesInstanceUID"),
        ("sop_instance_uid", "SOPInstanceUID"),
        ("manufacturer", "Manufacturer"),
        ("manufacturer_model_name", "ManufacturerModelName"),
        ("institution_name", "InstitutionName"),
        ("station_name", "StationName"),
    ]:
        if (value := _dicom_str(ds, keyword)):
            meta[key] = value
    if acquisition:
        meta["acquisition_datetime"] = _dicom_datetime(acquisition)
    meta["waveform_group"] = str(group.get("MultiplexGroupLabel", "") or "").strip() or f"#{index}"
    meta["source_units"] = units
    channels = group.get("ChannelDefinitionSequence") or []
    if channels:
        low, high = channels[0].get("FilterLowFrequency"), channels[0].get("FilterHighFrequency")
        if low is not None:
            meta["filter_low_hz"] = float(low)
        if high is not None:
            meta["filter_high_hz"] = float(high)
    return EcgRecord(signals=signals, leads=leads, sampling_rate=rate, patient=patient, meta=meta)


def _sop_class_name(uid: str | None) -> str:
    if not uid:
        return "no SOP Class UID"
    try:
        from pydicom.uid import UID

        name = UID(uid).name
    except Exception:
        name = uid
    return f"{name}" if name and name != uid else f"SOP class {uid}"


def _decode_group(ds, group, index: int) -> tuple[np.ndarray, tuple[str, ...], float, str]:
    label = str(group.get("MultiplexGroupLabel", "") or f"#{index}").strip()
    for keyword in ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "SamplingFrequency",
                    "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
                    "ChannelDefinitionSequence"):
        if keyword not in group or group.get(keyword) is None:
            raise EcgInputError("WaveformSequence", f"waveform group {label!r} has no {keyword}")
    n_channels = int(group.NumberOfWaveformChannels)
    n_samples = int(group.NumberOfWaveformSamples)
    rate = float(group.SamplingFrequency)
    interpretation = str(group.WaveformSampleInterpretation).strip()
    bits = int(group.WaveformBitsAllocated)
    channels = list(group.ChannelDefinitionSequence)
    if interpretation not in _INTEGER_INTERPRETATIONS:
        raise EcgInputError(
            "WaveformSampleInterpretation",
            f"sample encoding {interpretation!r} (e.g. mu-law / A-law) is not supported for ECGs",
        )
    if len(channels) != n_channels:
        raise EcgInputError(
            "ChannelDefinitionSequence",
            f"waveform group {label!r} declares {n_channels} channels but defines {len(channels)}",
        )
    expected = n_channels * n_samples * (bits // 8)
    have = len(group.WaveformData)
    if have < expected:
        raise EcgInputError(
            "file",
            f"the ECG waveform data is truncated: {have} bytes where {n_channels} channels × "
            f"{n_samples} samples need {expected}",
        )

    names: list[str] = []
    leads: list[str | None] = []
    for channel in channels:
        lead, description = _channel_lead(channel)
        leads.append(lead)
        names.append(description)
    normalized = _normalize_leads([lead or name for lead, name in zip(leads, names)])

    # raw × sensitivity × correction + baseline, per channel (pydicom), shape (samples, channels)
    values = ds.waveform_array(index)
    factors = np.empty(n_channels)
    units_seen = []
    for j, channel in enumerate(channels):
        if channel.get("ChannelSensitivity") is None:
            raise EcgInputError(
                "ChannelSensitivity",
                f"channel {normalized[j]} has no ChannelSensitivity, so its amplitude in volts is unknown",
            )
        units_seq = channel.get("ChannelSensitivityUnitsSequence")
        unit = None
        if units_seq:
            unit = units_seq[0].get("CodeValue") or units_seq[0].get("CodeMeaning")
        factor = _mv_factor(unit)
        if factor is None:
            raise EcgInputError(
                "ChannelSensitivityUnitsSequence",
                f"channel {normalized[j]} has sensitivity units {unit!r}; expected uV or mV",
            )
        factors[j] = factor
        units_seen.append(str(unit))
    signals = np.ascontiguousarray((values * factors[None, :]).T, dtype=np.float64)
    units = units_seen[0] if len(set(units_seen)) == 1 else ",".join(units_seen)
    return signals, normalized, rate, units


# --------------------------------------------------------------------------------------------------
# WFDB

MAX_ZIP_MEMBERS = 64
MAX_ZIP_BYTES = 256 * 1024 * 1024  # uncompressed; a 12-lead 10 s record is well under 1 MiB


def read_wfdb(source: bytes | bytearray | str | Path) -> EcgRecord:
    """Read one WFDB record (PhysioNet / CinC Challenge 2021 layout) into an EcgRecord.

    Args:
        source: zip bytes, a path to a zip, a path to the ``.hea`` (or ``.mat``/``.dat``) file, or the
            record path without extension. The zip must hold exactly one record (one ``.hea`` and the
            signal files it names, in the same folder).

    CinC header comments ``# Age:``, ``# Sex:``, ``# Dx:`` become ``patient["age"]``, ``patient["sex"]``
    ('M'/'F') and ``labels`` (SNOMED CT code strings, ``meta["label_system"] = "SNOMED-CT"``).

    Raises:
        EcgInputError: field "file" for a bad zip (no header, several records, unsafe member names,
            too large) or an unreadable record; "units" for non-voltage units; "leads" for unknown
            or duplicate lead names.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_wfdb_zip(bytes(source))
    path = Path(source)
    if path.suffix.lower() == ".zip" or (path.is_file() and zipfile.is_zipfile(path)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EcgInputError("file", f"cannot open {path}: {exc.strerror or exc}") from None
        return _read_wfdb_zip(data)
    record = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".mat") else path
    if not record.with_name(record.name + ".hea").is_file():
        raise EcgInputError("file", f"no WFDB header {record.name}.hea in {record.parent}")
    return _read_wfdb_record(record)


def _unsafe_member(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized) or "\x00" in normalized:
        return True
    return any(part == ".." for part in normalized.split("/"))


def _junk_member(name: str) -> bool:
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store", "Thumbs.db")


def _read_wfdb_zip(data: bytes) -> EcgRecord:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise EcgInputError("file", f"not a readable zip archive ({exc})") from None
    with archive:
        for info in infos:
            if _unsafe_member(info.filename):
                raise EcgInputError(
                    "file",
                    f"the zip contains an unsafe file name {info.filename!r} (absolute path or '..'); "
                    "put the record's .hea and .mat/.dat files at the top of the zip",
                )
        infos = [info for info in infos if not _junk_member(info.filename)]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise EcgInputError("file", f"the zip holds {len(infos)} files; one WFDB record (.hea + signal files) expected")
        if sum(info.file_size for info in infos) > MAX_ZIP_BYTES:
            raise EcgInputError("file", f"the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MiB; one ECG record expected")
        headers = [info for info in infos if info.filename.lower().endswith(".hea")]
        if not headers:
            raise EcgInputError("file", "the zip holds no WFDB header (.hea) file")
        if len(headers) > 1:
            names = ", ".join(info.filename for info in headers[:5])
            raise EcgInputError("file", f"the zip holds {len(headers)} records ({names}); send one record per upload")
        header = headers[0]
        folder = posixpath.dirname(header.filename.replace("\\", "/"))
        record_name = posixpath.basename(header.filename)[: -len(".hea")]
        with tempfile.TemporaryDirectory(prefix="preread-wfdb-") as tmp:
            for info in infos:
                name = info.filename.replace("\\", "/")
                if posixpath.dirname(name) != folder:
                    continue
                target = Path(tmp) / posixpath.basename(name)
                try:
                    target.write_bytes(archive.read(info))
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    raise EcgInputError("file", f"cannot unpack {info.filename!r} from the zip ({exc})") from None
            record = _read_wfdb_record(Path(tmp) / record_name)
    record.meta["source"] = "zip"
    return record


def parse_cinc_comments(comments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """CinC header comments (``Age: 53``, ``Sex: Male``, ``Dx: 426783006,164889003``) → (patient
    fields ``age``/``sex``, SNOMED CT codes). ``Dx: Unknown`` gives no codes."""
    patient: dict[str, Any] = {}
    labels: list[str] = []
    for comment in comments or []:
        key, sep, value = str(comment).partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            age = _number(value)
            if age is not None and age >= 0:
                patient["age"] = age
        elif key == "sex":
            sex = _sex(value)
            if sex:
                patient["sex"] = sex
        elif key == "dx":
            labels = [code.strip() for code in value.split(",") if code.strip() and code.strip().lower() != "unknown"]
    return patient, labels


def _read_wfdb_record(record: Path) -> EcgRecord:
    import wfdb

    try:
        rec = wfdb.rdrecord(str(record))
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if getattr(exc, "filename", None) else str(exc)
        raise EcgInputError("file", f"the WFDB header refers to a signal file that is missing: {missing}") from None
    except Exception as exc:
        raise EcgInputError("file", f"the WFDB record could not be read ({type(exc).__name__}: {exc})") from None
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[1] == 0:
        raise EcgInputError("file", "the WFDB record holds no signals")
    leads = _normalize_leads(list(rec.sig_name or []))
    factors = []
    for lead, unit in zip(leads, rec.units or [None] * len(leads)):
        factor = _mv_factor(unit)
        if factor is None:
            raise EcgInputError("units", f"lead {lead} is recorded in {unit!r}; expected mV or uV")
        factors.append(factor)
    signals = np.ascontiguousarray(rec.p_signal.T * np.asarray(factors)[:, None], dtype=np.float64)
    patient, labels = parse_cinc_comments(rec.comments)
    meta: dict[str, Any] = {"format": "wfdb", "record_name": rec.record_name}
    if labels:
        meta["label_system"] = "SNOMED-CT"
    if rec.base_date is not None:
        meta["acquisition_datetime"] = (
            f"{rec.base_date.isoformat()}T{rec.base_time.isoformat()}" if rec.base_time is not None else rec.base_date.isoformat()
        )
    return EcgRecord(signals=signals, leads=leads, sampling_rate=float(rec.fs), patient=patient, meta=meta, labels=labels)


# --------------------------------------------------------------------------------------------------
# JSON

def read_json(obj: Any) -> EcgRecord:
    """Read the JSON ECG form ``{"sampling_rate": Hz, "leads": {"I": [...], ...}, "units": "mV"|"uV",
    "patient": {...}, "site": "..."}`` (units default to mV).

    Raises:
        EcgInputError: naming the field: "file" (not an object), "sampling_rate", "leads",
            "leads.<name>" (not a list of numbers, wrong length), "units", "patient", "site".
    """
    if not isinstance(obj, dict):
        raise EcgInputError("file", f"expected a JSON object, got {_json_type(obj)}")
    rate = obj.get("sampling_rate")
    if rate is None:
        raise EcgInputError("sampling_rate", "missing; give the sampling rate in Hz (e.g. 500)")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise EcgInputError("sampling_rate", f"expected a positive number of samples per second (Hz), got {rate!r}")

    units = obj.get("units", "mV")
    factor = _mv_factor(units) if isinstance(units, str) else None
    if factor not in (1.0, 1e-3):
        raise EcgInputError("units", f"expected 'mV' or 'uV', got {units!r}")

    leads_obj = obj.get("leads")
    if leads_obj is None:
        raise EcgInputError("leads", "missing; give each lead's samples, e.g. {\"I\": [...], \"II\": [...], ...}")
    if not isinstance(leads_obj, dict):
        raise EcgInputError("leads", f"expected an object mapping lead names to sample lists, got {_json_type(leads_obj)}")
    if not leads_obj:
        raise EcgInputError("leads", "no leads given")
    names = list(leads_obj)
    leads = _normalize_leads([str(n) for n in names])

    rows = []
    length = None
    for raw_name, lead in zip(names, leads):
        values = leads_obj[raw_name]
        field = f"leads.{lead}"
        if not isinstance(values, list):
            raise EcgInputError(field, f"expected a list of numbers, got {_json_type(values)}")
        if not values:
            raise EcgInputError(field, "no samples")
        row = _numeric_row(values, field)
        if length is None:
            length, first = row.shape[0], lead
        elif row.shape[0] != length:
            raise EcgInputError(field, f"has {row.shape[0]} samples but lead {first} has {length}; all leads must be the same length")
        rows.append(row)
    signals = np.ascontiguousarray(np.vstack(rows) * factor, dtype=np.float64)

    patient = obj.get("patient", {})
    if patient is None:
        patient = {}
    if not isinstance(patient, dict):
        raise EcgInputError("patient", f"expected an object, got {_json_type(patient)}")
    meta: dict[str, Any] = {"format": "json"}
    site = obj.get("site")
    if site is not None:
        if not isinstance(site, str):
            raise EcgInputError("site", f"expected a string, got {_json_type(site)}")
        meta["site"] = site
    return EcgRecord(signals=signals, leads=leads, sampling_rate=float(rate), patient=dict(patient), meta=meta)


def _numeric_row(values: list, field: str) -> np.ndarray:
    """List of JSON numbers → float array. null (and NaN, which Python's json accepts) become NaN, which
    validation then reports per lead; booleans, strings and nested lists are type errors."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise EcgInputError(field, "expected a flat list of numbers, got nested lists")
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if arr.dtype.kind == "O":
        bad = next((v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))), None)
        if bad is None:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        raise EcgInputError(field, f"expected a list of numbers, found {_json_type(bad)} {bad!r:.40}")
    example = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))), values[0])
    raise EcgInputError(field, f"expected a list of numbers, found {_json_type(example)} {example!r:.40}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Sniffing entry point

_JSON_TYPES = {"application/json", "text/json"}
_ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip"}
_DICOM_TYPES = {"application/dicom"}


def read_ecg(body: bytes, content_type: str | None = None, filename: str | None = None) -> EcgRecord:
    """Read an uploaded ECG of any supported kind.

    The bytes decide first: 'DICM' at offset 128 → DICOM waveform; zip magic ('PK') → WFDB zip; a
    JSON object (leading '{') → JSON form. Then the content type (application/json or +json,
    application/dicom, application/zip) and finally the filename extension (.json, .dcm, .zip).

    Raises:
        EcgInputError: field "file" with reason "not a DICOM waveform, WFDB zip or JSON ECG" when
            nothing matches, or the reader's own error.
    """
    data = bytes(body or b"")
    if not data:
        raise EcgInputError("file", "the upload is empty")
    ctype = (content_type or "").split(";")[0].strip().lower()
    ext = Path(filename).suffix.lower() if filename else ""

    if len(data) >= 132 and data[128:132] == b"DICM":
        return read_dicom_waveform(data)
    if data[:2] == b"PK" and data[2:4] in (b"\x03\x04", b"\x05\x06"):
        return read_wfdb(data)
    looks_json = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"
    if looks_json or ctype in _JSON_TYPES or ctype.endswith("+json") or (not ctype and ext == ".json"):
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EcgInputError("file", f"not valid JSON ({exc})") from None
        return read_json(obj)
    if ctype in _DICOM_TYPES or ext in (".dcm", ".dicom"):
        return read_dicom_waveform(data)
    if ctype in _ZIP_TYPES or ext == ".zip":
        return read_wfdb(data)
    raise EcgInputError("file", "not a DICOM waveform, WFDB zip or JSON ECG")

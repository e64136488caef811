"""DICOM ECG waveform objects (12-lead, General and Ambulatory ECG Waveform Storage) → EcgRecord."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import mv_factor, normalize_lead_name, normalize_leads, parse_sex
from datasets.ecg.readers.base import EcgReader
from datasets.ecg.record import EcgRecord
from datasets.ecg.validate import check_duration, check_sampling_rate
from datasets.vocabulary.sop import ECG_SOP_CLASSES

__all__ = ["ECG_SOP_CLASSES", "DicomWaveformReader", "read_dicom_waveform"]

_INTEGER_INTERPRETATIONS = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}


def _load_dicom(source: Any):
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
        # Values are decoded lazily; touch the tree now so damage shows up here, as "file".
        _decode_all(ds)
    except EcgInputError:
        raise
    except InvalidDicomError:
        raise EcgInputError("file", "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except OSError as exc:
        if isinstance(source, (str, Path)):
            raise EcgInputError("file", f"cannot open {source}: {exc.strerror or exc}") from None
        raise EcgInputError("file", f"the DICOM file is damaged or truncated ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged input (EOFError, struct.error, ...)
        raise EcgInputError("file", f"the DICOM file is damaged or truncated ({type(exc).__name__}: {exc})") from None
    return ds


# Sequences the reader never uses, left undecoded: a cart's WaveformAnnotationSequence can hold a
# thousand items (Mortara: ~1,100 beat labels), and decoding them cost more CPU than the whole read.
_UNUSED_SEQUENCES = frozenset({"WaveformAnnotationSequence"})


def _decode_all(ds) -> None:
    """Decode every value of ``ds`` (recursively) except the sequences in ``_UNUSED_SEQUENCES``."""
    for element in ds:
        if element.keyword in _UNUSED_SEQUENCES:
            continue
        if element.VR == "SQ":
            for item in element.value:
                _decode_all(item)


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
                raise EcgInputError(
                    "file", "the DICOM file is incomplete: no SOP Class UID and no waveform data (truncated upload?)"
                )
            raise EcgInputError(
                "file",
                f"the DICOM file is incomplete: a {ECG_SOP_CLASSES[sop_class]} object without its waveform data "
                "(truncated upload?)",
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
    except Exception as exc:  # noqa: BLE001 - damaged element values surface here
        raise EcgInputError("file", f"the ECG waveform could not be decoded ({type(exc).__name__}: {exc})") from None

    patient, acquisition = _patient(ds)
    meta = _meta(ds, group, index, units, acquisition)
    return EcgRecord(signals=signals, leads=leads, sampling_rate=rate, patient=patient, meta=meta)


def _patient(ds) -> tuple[dict[str, Any], str | None]:
    """(patient fields, the acquisition date-time text) of a DICOM ECG."""
    patient: dict[str, Any] = {}
    if value := _dicom_str(ds, "PatientID"):
        patient["id"] = value
    if value := _dicom_str(ds, "PatientName"):
        patient["name"] = value
    if value := _dicom_str(ds, "IssuerOfPatientID"):
        patient["issuer"] = value  # with the ID, who the patient is (comparison with priors)
    if value := parse_sex(_dicom_str(ds, "PatientSex")):
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

    return patient, acquisition


def _meta(ds, group, index: int, units: str, acquisition: str | None) -> dict[str, Any]:
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
        if value := _dicom_str(ds, keyword):
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
    return meta


def _sop_class_name(uid: str | None) -> str:
    if not uid:
        return "no SOP Class UID"
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001 - an unknown UID has no name: show the UID
        name = uid
    return f"{name}" if name and name != uid else f"SOP class {uid}"


def _decode_group(ds, group, index: int) -> tuple[np.ndarray, tuple[str, ...], float, str]:
    label = str(group.get("MultiplexGroupLabel", "") or f"#{index}").strip()
    for keyword in (
        "NumberOfWaveformChannels",
        "NumberOfWaveformSamples",
        "SamplingFrequency",
        "WaveformBitsAllocated",
        "WaveformSampleInterpretation",
        "WaveformData",
        "ChannelDefinitionSequence",
    ):
        if keyword not in group or group.get(keyword) is None:
            raise EcgInputError("WaveformSequence", f"waveform group {label!r} has no {keyword}")
    n_channels = int(group.NumberOfWaveformChannels)
    n_samples = int(group.NumberOfWaveformSamples)
    # Checked before the samples are decoded: a wrong header is refused without reading them.
    rate = check_sampling_rate(group.SamplingFrequency, "SamplingFrequency")
    check_duration(n_samples, rate)
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
    normalized = normalize_leads([lead or name for lead, name in zip(leads, names)])

    # raw × sensitivity × correction + baseline, per channel (pydicom), shape (samples, channels)
    values = ds.waveform_array(index)
    factors, units = _channel_mv_factors(channels, normalized)
    signals = np.ascontiguousarray((values * factors[None, :]).T, dtype=np.float64)
    return signals, normalized, rate, units


def _channel_mv_factors(channels, normalized: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """Per channel, the factor from its sensitivity unit (ChannelSensitivityUnitsSequence) to mV, and
    the unit(s) as text; a channel without sensitivity or with a non-voltage unit is refused."""
    factors = np.empty(len(channels))
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
        factor = mv_factor(unit)
        if factor is None:
            raise EcgInputError(
                "ChannelSensitivityUnitsSequence",
                f"channel {normalized[j]} has sensitivity units {unit!r}; expected uV or mV",
            )
        factors[j] = factor
        units_seen.append(str(unit))
    return factors, units_seen[0] if len(set(units_seen)) == 1 else ",".join(units_seen)


class DicomWaveformReader(EcgReader):
    """DICOM 12-lead / General / Ambulatory ECG Waveform Storage (Part 10 file with the 'DICM' preamble)."""

    name = "dicom"
    description = "DICOM ECG waveform"
    suffixes = (".dcm", ".dicom")
    content_types = ("application/dicom",)

    def sniff(self, head: bytes) -> bool:
        return len(head) >= 132 and head[128:132] == b"DICM"

    def read(self, source: Any) -> EcgRecord:
        return read_dicom_waveform(source)

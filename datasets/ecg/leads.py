"""Lead names and units as ECG files spell them, mapped to ``STANDARD_LEADS`` and millivolts.

Shared by every reader (``datasets.ecg.readers``) and by validation (``datasets.ecg.validate``), so a
lead called "MDC_ECG_LEAD_AVR" in an HL7 aECG and "aVR" in a WFDB header are the same lead.
"""

from __future__ import annotations

import math
import re
from typing import Any

from datasets.ecg.errors import EcgInputError
from datasets.ecg.record import STANDARD_LEADS

__all__ = ["mv_factor", "normalize_lead_name", "normalize_leads", "parse_number", "parse_sex"]

_LEAD_BY_UPPER = {name.upper(): name for name in STANDARD_LEADS}
# Spellings seen in the wild that are unambiguous ("DI/DII/DIII" in Latin-American/Spanish devices).
_LEAD_BY_UPPER.update({"DI": "I", "DII": "II", "DIII": "III"})

# DICOM CID 3001 "ECG Leads": SCPECG codes (scheme SCPECG) and ISO/IEEE 11073 MDC codes (scheme MDC).
_LEAD_BY_CODE = {}
for _number, _name in [
    (1, "I"),
    (2, "II"),
    (61, "III"),
    (62, "aVR"),
    (63, "aVL"),
    (64, "aVF"),
    (3, "V1"),
    (4, "V2"),
    (5, "V3"),
    (6, "V4"),
    (7, "V5"),
    (8, "V6"),
]:
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
            upper = upper[len(prefix) :].strip()
            break
    upper = _PARENTHESIS.sub("", upper).replace(" ", "")
    return _LEAD_BY_UPPER.get(upper)


def normalize_leads(names: list[str], field: str = "leads") -> tuple[str, ...]:
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
        seen[str(lead)] = raw
    if duplicates:
        raise EcgInputError(field, f"lead given more than once: {'; '.join(duplicates)}")
    return tuple(str(lead) for lead in normalized)


def mv_factor(unit: Any) -> float | None:
    """Multiplier from ``unit`` to millivolts (None if not a voltage unit we know)."""
    if unit is None:
        return None
    u = str(unit).strip().replace("µ", "u").replace("μ", "u").lower()
    return {
        "mv": 1.0,
        "millivolt": 1.0,
        "millivolts": 1.0,
        "uv": 1e-3,
        "microvolt": 1e-3,
        "microvolts": 1e-3,
        "nv": 1e-6,
        "nanovolt": 1e-6,
        "nanovolts": 1e-6,
        "v": 1e3,
        "volt": 1e3,
        "volts": 1e3,
    }.get(u)


def parse_sex(value: Any) -> str | None:
    """'M' / 'F' / 'O' from DICOM codes, CinC words or cart fields; None when unknown."""
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


def parse_number(text: Any) -> int | float | None:
    """A finite number from text (int when whole), else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value

"""The JSON ECG form of the HTTP API: ``{"sampling_rate": Hz, "leads": {"I": [...], ...}, ...}``."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import mv_factor, normalize_leads
from datasets.ecg.readers.base import EcgReader, source_bytes
from datasets.ecg.record import EcgRecord
from datasets.ecg.validate import check_duration

__all__ = ["JsonReader", "read_json"]


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
    factor = mv_factor(units) if isinstance(units, str) else None
    if factor not in (1.0, 1e-3):
        raise EcgInputError("units", f"expected 'mV' or 'uV', got {units!r}")

    signals, leads = _lead_samples(obj.get("leads"), float(rate))
    signals = np.ascontiguousarray(signals * factor, dtype=np.float64)

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


def _lead_samples(leads_obj: Any, rate: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """(samples [leads, n] in the file's units, standard lead names) of the ``leads`` object; every lead
    a non-empty list of numbers, all of one length that is a readable duration at ``rate``."""
    if leads_obj is None:
        raise EcgInputError("leads", 'missing; give each lead\'s samples, e.g. {"I": [...], "II": [...], ...}')
    if not isinstance(leads_obj, dict):
        raise EcgInputError(
            "leads", f"expected an object mapping lead names to sample lists, got {_json_type(leads_obj)}"
        )
    if not leads_obj:
        raise EcgInputError("leads", "no leads given")
    names = list(leads_obj)
    leads = normalize_leads([str(n) for n in names])
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
            check_duration(row.shape[0], rate)
            length, first = row.shape[0], lead
        elif row.shape[0] != length:
            raise EcgInputError(
                field, f"has {row.shape[0]} samples but lead {first} has {length}; all leads must be the same length"
            )
        rows.append(row)
    return np.vstack(rows), leads


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
        bad = next(
            (v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))), None
        )
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


class JsonReader(EcgReader):
    """The JSON form (a parsed object, or its UTF-8 bytes)."""

    name = "json"
    description = "JSON ECG"
    suffixes = (".json",)
    content_types = ("application/json", "text/json")

    def accepts_content_type(self, content_type: str | None) -> bool:
        ctype = (content_type or "").split(";")[0].strip().lower()
        return super().accepts_content_type(ctype) or ctype.endswith("+json")

    def sniff(self, head: bytes) -> bool:
        return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"

    def read(self, source: Any) -> EcgRecord:
        if isinstance(source, dict):
            return read_json(source)
        data = source_bytes(source, self.name)
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EcgInputError("file", f"not valid JSON ({exc})") from None
        return read_json(obj)

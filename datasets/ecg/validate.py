"""Checks that a read ECG is a usable resting 12-lead recording, with reasons a clinic can act on.

``validate_record(record)`` returns the record with its rows in ``STANDARD_LEADS`` order (deriving
the four dependent limb leads from I and II when only those are missing) or raises
:class:`~datasets.ecg.errors.EcgInputError`. Checks, in order: signal shape, lead names (unknown,
duplicate, missing), sampling rate, duration (at least 8 s, at most 60 s: a resting ECG is 10 s; an
hour-long Holter strip sent here would take gigabytes to store and read), non-finite samples,
implausible amplitudes, all leads flat.

``check_sampling_rate`` and ``check_duration`` are the same two rules for readers to apply to a file's
header *before* they decode its samples, so a bad header is refused without reading (or storing) the
signal: a missing, zero or negative sampling rate is an error, never a silent default.

Leads that are flat on their own (a lead-off electrode) do not fail the record; they are listed in
``meta["flat_leads"]`` so the reader can see them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import normalize_lead_name
from datasets.ecg.record import STANDARD_LEADS, EcgRecord

__all__ = ["MAX_RESTING_SECONDS", "ValidationRules", "check_duration", "check_sampling_rate", "validate_record"]

LIMB_DERIVED = ("III", "aVR", "aVL", "aVF")
FLAT_PTP_MV = 1e-6  # a lead whose peak-to-peak range is below 1 nV carries no signal
# A resting 12-lead ECG is 10 s; carts offer up to 60 s rhythm strips. Longer is a Holter/monitor
# recording, which this service does not read (an 83-minute one once took 3.4 GB in a replica).
MAX_RESTING_SECONDS = 60.0


def check_sampling_rate(value: object, field: str = "sampling_rate", require_finite: bool = True) -> float:
    """The sampling rate as a positive float, or EcgInputError(field): missing, not a number, zero,
    negative (and, with ``require_finite``, NaN or infinite) are refused: a reader must never fall
    back to a default rate."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise EcgInputError(field, "missing; the file must state its sampling rate in Hz (e.g. 500)")
    if isinstance(value, bool):
        raise EcgInputError(field, f"expected a number of samples per second (Hz), got {value!r}")
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EcgInputError(field, f"expected a number of samples per second (Hz), got {value!r}") from None
    if rate <= 0 or (require_finite and not math.isfinite(rate)):
        raise EcgInputError(field, f"expected a positive number of samples per second (Hz), got {value!r}")
    return rate


def check_duration(n_samples: int, rate: float, max_seconds: float = MAX_RESTING_SECONDS) -> None:
    """EcgInputError("duration") when ``n_samples`` at ``rate`` is longer than a resting ECG may be."""
    seconds = n_samples / rate
    if seconds > max_seconds:
        raise EcgInputError(
            "duration",
            f"the recording is {seconds:.1f} s long ({n_samples} samples at {_fmt(rate)} Hz); a resting ECG "
            f"may be at most {_fmt(max_seconds)} s (a standard one is 10 s). Long-term (Holter) recordings "
            "are not read here: send a 10 s resting ECG",
        )


@dataclass
class ValidationRules:
    """Acceptance limits. ``derive_limb_leads``: rebuild III, aVR, aVL, aVF from I and II
    (Einthoven / Goldberger) when only those are missing."""

    min_rate: float = 100
    max_rate: float = 2000
    min_seconds: float = 8.0
    max_seconds: float = MAX_RESTING_SECONDS
    max_abs_mv: float = 20.0
    derive_limb_leads: bool = True


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1 else f"{value:.3g}"


def _lead_list(names) -> str:
    return ", ".join(names)


def validate_record(record: EcgRecord, rules: ValidationRules | None = None) -> EcgRecord:
    """Check ``record`` and return a new EcgRecord in STANDARD_LEADS order (float64, mV).

    ``meta["derived_leads"]`` lists leads computed from I and II; ``meta["flat_leads"]`` lists leads
    without signal (only present when non-empty). The input record is not modified.

    Raises:
        EcgInputError: "signals" (shape), "leads" (unknown, duplicate or missing leads),
            "sampling_rate", "duration", "signals.<lead>" (non-finite samples, absurd amplitude),
            "signals" (all leads flat).
    """
    rules = rules or ValidationRules()
    signals = _check_shape(record)
    normalized, missing = _check_leads(list(record.leads), rules)
    rate = _check_timing(record.sampling_rate, signals.shape[1], rules)
    signals = signals.astype(np.float64, copy=False)
    flat = _check_values(signals, normalized, rules)  # on the leads as received, before deriving any
    rows = {lead: signals[i] for i, lead in enumerate(normalized)}
    for lead in missing:
        rows[lead] = _derive_limb_lead(lead, rows["I"], rows["II"])
    meta = dict(record.meta)
    if missing:
        meta["derived_leads"] = list(missing)
    flat_leads = [lead for lead, is_flat in zip(normalized, flat) if is_flat]
    if flat_leads:
        meta["flat_leads"] = sorted(flat_leads, key=STANDARD_LEADS.index)
    return EcgRecord(
        signals=np.ascontiguousarray(np.vstack([rows[lead] for lead in STANDARD_LEADS]), dtype=np.float64),
        leads=STANDARD_LEADS,
        sampling_rate=rate,
        patient=dict(record.patient),
        meta=meta,
        labels=list(record.labels),
        machine=record.machine,
    )


def _check_shape(record: EcgRecord) -> np.ndarray:
    signals = np.asarray(record.signals)
    if signals.ndim != 2:
        raise EcgInputError(
            "signals", f"expected one row of samples per lead, got an array with {signals.ndim} dimension(s)"
        )
    if not np.issubdtype(signals.dtype, np.number) or np.issubdtype(signals.dtype, np.complexfloating):
        raise EcgInputError("signals", f"expected numeric samples, got {signals.dtype}")
    if signals.shape[0] != len(record.leads):
        raise EcgInputError("signals", f"{signals.shape[0]} signal rows for {len(record.leads)} lead names")
    return signals


def _check_leads(names: list, rules: ValidationRules) -> tuple[list[str], list[str]]:
    """(standard names of the rows, limb leads to derive); unknown, duplicate or missing leads raise."""
    normalized = [normalize_lead_name(n) for n in names]
    unknown = [str(n) for n, m in zip(names, normalized) if m is None]
    if unknown:
        raise EcgInputError(
            "leads",
            f"unknown lead name(s) {', '.join(repr(u) for u in unknown)}; "
            f"expected the 12 standard leads {_lead_list(STANDARD_LEADS)}",
        )
    duplicates = sorted({m for m in normalized if normalized.count(m) > 1}, key=STANDARD_LEADS.index)
    if duplicates:
        raise EcgInputError("leads", f"lead(s) given more than once: {_lead_list(duplicates)}")
    missing = [lead for lead in STANDARD_LEADS if lead not in normalized]
    derivable = (
        rules.derive_limb_leads
        and missing
        and set(missing) <= set(LIMB_DERIVED)
        and "I" in normalized
        and "II" in normalized
    )
    if missing and not derivable:
        reason = f"missing lead(s) {_lead_list(missing)}; a 12-lead ECG needs {_lead_list(STANDARD_LEADS)}"
        if rules.derive_limb_leads and set(missing) & set(LIMB_DERIVED) and not set(missing) & {"I", "II"}:
            reason += " (III, aVR, aVL and aVF can be computed from I and II, the chest leads V1-V6 cannot)"
        raise EcgInputError("leads", reason)
    return [str(m) for m in normalized], missing


def _check_timing(sampling_rate: object, n_samples: int, rules: ValidationRules) -> float:
    rate = check_sampling_rate(sampling_rate, require_finite=False)
    if not math.isfinite(rate) or not rules.min_rate <= rate <= rules.max_rate:
        raise EcgInputError(
            "sampling_rate",
            f"sampling rate {_fmt(rate)} Hz is outside the accepted range "
            f"{_fmt(rules.min_rate)}-{_fmt(rules.max_rate)} Hz (resting ECGs are usually recorded at 250-1000 Hz)",
        )
    seconds = n_samples / rate
    if seconds < rules.min_seconds:
        raise EcgInputError(
            "duration",
            f"the recording is {seconds:.2f} s long ({n_samples} samples at {_fmt(rate)} Hz); "
            f"at least {_fmt(rules.min_seconds)} s is needed (a standard resting ECG is 10 s)",
        )
    check_duration(n_samples, rate, rules.max_seconds)
    return rate


def _check_values(signals: np.ndarray, normalized: list[str], rules: ValidationRules) -> np.ndarray:
    """Non-finite samples and absurd amplitudes raise; returns the per-lead "flat" flags."""
    n_samples = signals.shape[1]
    finite = np.isfinite(signals)
    if not finite.all():
        bad = [(normalized[i], int((~finite[i]).sum())) for i in range(len(normalized)) if not finite[i].all()]
        bad.sort(key=lambda item: STANDARD_LEADS.index(item[0]))
        detail = "; ".join(f"lead {lead}: {count} of {n_samples}" for lead, count in bad)
        raise EcgInputError(
            f"signals.{bad[0][0]}",
            f"missing or non-numeric samples (NaN, infinity or null) in {detail}",
        )
    peaks = np.abs(signals).max(axis=1)
    over = [(normalized[i], float(peaks[i])) for i in range(len(normalized)) if peaks[i] > rules.max_abs_mv]
    if over:
        over.sort(key=lambda item: STANDARD_LEADS.index(item[0]))
        detail = "; ".join(f"lead {lead} reaches {value:.4g} mV" for lead, value in over)
        raise EcgInputError(
            f"signals.{over[0][0]}",
            f"implausible amplitude: {detail}, more than {_fmt(rules.max_abs_mv)} mV "
            "(were microvolts sent as millivolts? check the units)",
        )
    flat = np.ptp(signals, axis=1) < FLAT_PTP_MV
    if flat.all():
        raise EcgInputError(
            "signals", "all leads are flat (no signal); check the electrodes and cables and record again"
        )
    return flat


def _derive_limb_lead(lead: str, lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """III by Einthoven's law, aVR / aVL / aVF by Goldberger's, from leads I and II."""
    return {
        "III": lambda: lead_ii - lead_i,
        "aVR": lambda: -(lead_i + lead_ii) / 2.0,
        "aVL": lambda: lead_i - lead_ii / 2.0,
        "aVF": lambda: lead_ii - lead_i / 2.0,
    }[lead]()

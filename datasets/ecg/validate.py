"""Checks that a read ECG is a usable resting 12-lead recording, with reasons a clinic can act on.

``validate_record(record)`` returns the record with its rows in ``STANDARD_LEADS`` order (deriving
the four dependent limb leads from I and II when only those are missing) or raises
:class:`~datasets.ecg.errors.EcgInputError`. Checks, in order: signal shape, lead names (unknown,
duplicate, missing), sampling rate, duration, non-finite samples, implausible amplitudes, all leads
flat. Leads that are flat on their own (a lead-off electrode) do not fail the record; they are listed
in ``meta["flat_leads"]`` so the reader can see them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datasets.ecg.errors import EcgInputError
from datasets.ecg.readers import normalize_lead_name
from datasets.ecg.record import STANDARD_LEADS, EcgRecord

__all__ = ["ValidationRules", "validate_record"]

LIMB_DERIVED = ("III", "aVR", "aVL", "aVF")
FLAT_PTP_MV = 1e-6  # a lead whose peak-to-peak range is below 1 nV carries no signal


@dataclass
class ValidationRules:
    """Acceptance limits. ``derive_limb_leads``: rebuild III, aVR, aVL, aVF from I and II
    (Einthoven / Goldberger) when only those are missing."""

    min_rate: float = 100
    max_rate: float = 2000
    min_seconds: float = 8.0
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
    signals = np.asarray(record.signals)
    if signals.ndim != 2:
        raise EcgInputError("signals", f"expected one row of samples per lead, got an array with {signals.ndim} dimension(s)")
    if not np.issubdtype(signals.dtype, np.number) or np.issubdtype(signals.dtype, np.complexfloating):
        raise EcgInputError("signals", f"expected numeric samples, got {signals.dtype}")
    names = list(record.leads)
    if signals.shape[0] != len(names):
        raise EcgInputError("signals", f"{signals.shape[0]} signal rows for {len(names)} lead names")

    # --- lead names
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
        rules.derive_limb_leads and missing and set(missing) <= set(LIMB_DERIVED)
        and "I" in normalized and "II" in normalized
    )
    if missing and not derivable:
        reason = f"missing lead(s) {_lead_list(missing)}; a 12-lead ECG needs {_lead_list(STANDARD_LEADS)}"
        if rules.derive_limb_leads and set(missing) & set(LIMB_DERIVED) and not set(missing) & {"I", "II"}:
            reason += " (III, aVR, aVL and aVF can be computed from I and II, the chest leads V1-V6 cannot)"
        raise EcgInputError("leads", reason)

    # --- sampling rate and duration
    try:
        rate = float(record.sampling_rate)
    except (TypeError, ValueError):
        raise EcgInputError("sampling_rate", f"expected a number of samples per second, got {record.sampling_rate!r}") from None
    if not math.isfinite(rate) or not rules.min_rate <= rate <= rules.max_rate:
        raise EcgInputError(
            "sampling_rate",
            f"sampling rate {_fmt(rate)} Hz is outside the accepted range "
            f"{_fmt(rules.min_rate)}-{_fmt(rules.max_rate)} Hz (resting ECGs are usually recorded at 250-1000 Hz)",
        )
    n_samples = signals.shape[1]
    seconds = n_samples / rate
    if seconds < rules.min_seconds:
        raise EcgInputError(
            "duration",
            f"the recording is {seconds:.2f} s long ({n_samples} samples at {_fmt(rate)} Hz); "
            f"at least {_fmt(rules.min_seconds)} s is needed (a standard resting ECG is 10 s)",
        )

    signals = signals.astype(np.float64, copy=False)

    # --- sample values (on the leads as received, before anything is derived from them)
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
        raise EcgInputError("signals", "all leads are flat (no signal); check the electrodes and cables and record again")

    # --- assemble in standard order, deriving the dependent limb leads if needed
    rows = {lead: signals[i] for i, lead in enumerate(normalized)}
    derived = []
    if missing:
        lead_i, lead_ii = rows["I"], rows["II"]
        formulas = {
            "III": lambda: lead_ii - lead_i,              # Einthoven
            "aVR": lambda: -(lead_i + lead_ii) / 2.0,     # Goldberger
            "aVL": lambda: lead_i - lead_ii / 2.0,
            "aVF": lambda: lead_ii - lead_i / 2.0,
        }
        for lead in missing:
            rows[lead] = formulas[lead]()
            derived.append(lead)
    out = np.ascontiguousarray(np.vstack([rows[lead] for lead in STANDARD_LEADS]), dtype=np.float64)

    meta = dict(record.meta)
    if derived:
        meta["derived_leads"] = derived
    flat_leads = [lead for lead, is_flat in zip(normalized, flat) if is_flat]
    if flat_leads:
        meta["flat_leads"] = sorted(flat_leads, key=STANDARD_LEADS.index)
    return EcgRecord(
        signals=out,
        leads=STANDARD_LEADS,
        sampling_rate=rate,
        patient=dict(record.patient),
        meta=meta,
        labels=list(record.labels),
    )

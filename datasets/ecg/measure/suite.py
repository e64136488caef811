"""The measurement suite of one 12-lead ECG: rhythm, global intervals, axes and per-lead amplitudes.

``measure(record)`` → :class:`EcgMeasurements`. ``values`` holds the global numbers (names as in
../shared/INTERFACES.md "The read"), ``leads`` the per-lead amplitudes (mV) keyed by lead name.

The global values are the ``SUITE_MEASUREMENTS`` of ``datasets.vocabulary.ecg_measurements``, where
each is defined with its unit (``EcgMeasurement``). Intervals are those of the median beat, axes come
from the net areas in I and II.

A value that could not be measured is None (a P wave in AF; a T end in a noisy median). ``measure``
never raises: on a record it cannot measure at all, ``error`` says why and every value is None.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets.ecg.measure import beats as bt
from datasets.ecg.measure.delineate import Fiducials, delineate
from datasets.ecg.measure.leads import frontal_axis, lead_amplitudes, voltage_criteria
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.vocabulary.ecg_measurements import LEAD_MEASUREMENTS, SUITE_MEASUREMENTS
from datasets.vocabulary.ecg_measurements import EcgLeadMeasurement as L
from datasets.vocabulary.ecg_measurements import EcgMeasurement as M

METHOD = (
    "preread vectorised delineator at 500 Hz: R peaks on the 8-lead QRS energy, median of the dominant "
    "beats, global boundaries from spatial velocity / magnitude (Zhang trapezium for P and T)"
)

PACING_SPIKE_MV = 0.5
"""A pacemaker spike: a second difference over 0.5 mV in one sample step at 500 Hz in any lead (an ECG's
steepest QRS reaches ~0.2; the 99.9th percentile of the 429 unpaced PTB-XL records is 0.23 on average)."""
MIN_BEATS = 3


@dataclass
class Analysis:
    """The intermediate arrays, kept for the quality check (so it does not filter twice)."""

    raw: np.ndarray  # (12, n) at ANALYSIS_RATE, STANDARD_LEADS order, mV
    diagnostic: np.ndarray  # the same after the 0.67 Hz zero-phase high-pass
    beats: bt.Beats | None = None
    fiducials: Fiducials | None = None


@dataclass
class EcgMeasurements:
    values: dict[str, float | int | None] = field(default_factory=lambda: dict.fromkeys(SUITE_MEASUREMENTS))
    leads: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str | None = None
    method: str = METHOD
    analysis: Analysis | None = field(default=None, repr=False)

    def get(self, key: str) -> float | None:
        value = self.values.get(key)
        return None if value is None else float(value)


def _r(value: float | None, digits: int = 0) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value) if digits == 0 else round(float(value), digits)


def measure(record: EcgRecord) -> EcgMeasurements:
    """Measure ``record`` (any rate, leads in any order; the 12 standard leads are needed)."""
    out = EcgMeasurements()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out.error = _measure_into(record, out)
    except Exception as exc:  # noqa: BLE001 - last line of defence: a measurement must never break a read
        out.values, out.leads = dict.fromkeys(SUITE_MEASUREMENTS), {}
        out.error = f"measurement failed ({type(exc).__name__}: {exc})"
    return out


def _signals(record: EcgRecord) -> tuple[np.ndarray | None, str | None]:
    try:
        rate = float(record.sampling_rate)
    except (TypeError, ValueError):
        rate = float("nan")
    if not math.isfinite(rate) or rate <= 0:
        return None, f"invalid sampling rate {record.sampling_rate!r}"
    missing = [name for name in STANDARD_LEADS if name not in record.leads]
    signals = np.asarray(record.signals, dtype=np.float64)
    if missing or signals.ndim != 2 or signals.shape[0] != len(record.leads):
        return None, f"the 12 standard leads are needed (missing: {', '.join(missing) or 'rows'})"
    signals = signals[[record.leads.index(name) for name in STANDARD_LEADS]]
    if signals.shape[1] < rate * 2 or not np.isfinite(signals).all():
        return None, "fewer than 2 s of finite samples"
    return bt.to_analysis_rate(signals, rate), None


def _measure_into(record: EcgRecord, out: EcgMeasurements) -> str | None:
    signals, why = _signals(record)
    if signals is None:
        return why
    rate = bt.ANALYSIS_RATE
    diagnostic = bt.diagnostic_filter(signals)
    out.analysis = Analysis(raw=signals, diagnostic=diagnostic)
    r_peaks = bt.detect_r_peaks(diagnostic)
    if len(r_peaks) < MIN_BEATS:
        return f"fewer than {MIN_BEATS} heartbeats found (flat or noisy recording?)"
    v = out.values
    rr = np.diff(r_peaks) * 1000.0 / rate
    rr_mean = float(rr.mean())
    v.update(
        {
            M.HEART_RATE: _r(60000.0 / rr_mean, 1),
            M.RR_MEAN: _r(rr_mean),
            M.RR_SD: _r(float(rr.std(ddof=1)), 1),
            M.RR_IRREGULARITY: _r(float(np.sqrt(np.mean(np.diff(rr) ** 2))) / rr_mean, 4) if len(rr) > 1 else None,
            M.RR_SUCCESSIVE_IRREGULARITY: _r(float(np.median(np.abs(np.diff(rr))) / np.median(rr)), 4)
            if len(rr) > 1
            else None,
            M.N_BEATS: len(r_peaks),
        }
    )
    beats = bt.build_beats(diagnostic, r_peaks)
    if beats is None:
        return None
    v[M.N_BEATS_MEDIAN] = len(beats.used)
    out.analysis.beats = beats
    fid = delineate(beats, rr_mean)
    out.analysis.fiducials = fid
    if fid is None:
        return None
    _intervals(v, fid, rr_mean, rate)
    amps = lead_amplitudes(beats, fid)
    out.leads = {
        name: {key: _r(float(amps[key][i]), 3) for key in LEAD_MEASUREMENTS} for i, name in enumerate(STANDARD_LEADS)
    }
    v.update({key: _r(val, 3) for key, val in voltage_criteria(amps).items()})
    pp = amps[L.R_AMPLITUDE] - np.minimum(amps[L.Q_AMPLITUDE], amps[L.S_AMPLITUDE])
    v[M.QRS_LIMB_MAX], v[M.QRS_PRECORDIAL_MAX] = _r(float(pp[:6].max()), 3), _r(float(pp[6:].max()), 3)
    v[M.P_AXIS] = _r(frontal_axis(beats, fid, fid.p_on, fid.p_off))
    v[M.QRS_AXIS] = _r(frontal_axis(beats, fid, fid.qrs_on, fid.qrs_off))
    v[M.T_AXIS] = _r(frontal_axis(beats, fid, fid.qrs_off + int(0.08 * rate), fid.t_end))
    v[M.P_WAVE_CONSISTENCY] = _r(_p_consistency(beats, fid), 3)
    v[M.PACING_SPIKE_FRACTION] = _r(_pacing_spikes(signals, r_peaks, rate), 3)
    return None


def _pacing_spikes(raw: np.ndarray, r_peaks: np.ndarray, rate: float) -> float:
    """Share of beats preceded (within 150 ms) by a sample whose second difference in any lead is a
    pacemaker spike's (far steeper than any QRS)."""
    steep = np.abs(np.diff(raw, 2, axis=1)).max(axis=0) > PACING_SPIKE_MV
    if not steep.any() or len(r_peaks) == 0:
        return 0.0
    csum = np.concatenate([[0], np.cumsum(steep)])
    start = np.clip(r_peaks - int(0.15 * rate), 0, len(steep))
    stop = np.clip(r_peaks, 0, len(steep))
    return float(np.mean(csum[stop] > csum[start]))


def _intervals(v: dict[str, Any], fid: Fiducials, rr_mean: float, rate: float) -> None:
    ms = 1000.0 / rate
    v[M.QRS_DURATION] = _r((fid.qrs_off - fid.qrs_on) * ms)
    if fid.p_on is not None and fid.p_off is not None:
        v[M.PR_INTERVAL] = _r((fid.qrs_on - fid.p_on) * ms)
        v[M.P_DURATION] = _r((fid.p_off - fid.p_on) * ms)
    if fid.t_end is not None:
        qt = (fid.t_end - fid.qrs_on) * ms
        rr_s = rr_mean / 1000.0
        v[M.QT_INTERVAL] = _r(qt)
        v[M.QTC_BAZETT] = _r(qt / math.sqrt(rr_s))
        v[M.QTC_FRIDERICIA] = _r(qt / rr_s ** (1.0 / 3.0))


def _p_consistency(beats: bt.Beats, fid: Fiducials) -> float:
    """Median over beats of the correlation of the beat's P wave (leads II and V1) with the median's,
    each detrended first (a baseline slope shared by all beats must not pass for a P wave: in AF the
    median of random f-waves plus that slope would otherwise correlate with every beat). 0 when the
    median beat has no P wave."""
    if fid.p_on is None or fid.p_off is None or beats.segments.shape[1] < 2 or fid.p_off - fid.p_on < 4:
        return 0.0
    atrial = [STANDARD_LEADS.index("II"), STANDARD_LEADS.index("V1")]
    each = _detrended(np.transpose(beats.segments[atrial, :, fid.p_on : fid.p_off], (1, 0, 2)))
    each = each.reshape(each.shape[0], -1)
    ref = _detrended(beats.median[atrial, fid.p_on : fid.p_off][None])[0].reshape(-1)
    corr = each @ ref / (np.linalg.norm(each, axis=1) * np.linalg.norm(ref) + 1e-12)
    return float(np.median(corr))


def _detrended(x: np.ndarray) -> np.ndarray:
    """``x`` (..., samples) minus its least-squares straight line along the last axis."""
    t = np.linspace(-1.0, 1.0, x.shape[-1])
    centred = x - x.mean(axis=-1, keepdims=True)
    slope = (centred @ t) / (t @ t)
    return centred - slope[..., None] * t

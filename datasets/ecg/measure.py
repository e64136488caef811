"""Rhythm and interval measurements shown beside the AI read of an ECG, computed with NeuroKit2.

``measure(record)`` returns a JSON-ready dict::

    heart_rate_bpm   60000 / mean RR
    rr_mean_ms       mean RR interval
    rr_sd_ms         standard deviation of the RR intervals (SDNN of this strip, ddof=1)
    rr_irregularity  RMSSD / mean RR: root mean square of successive RR differences divided by the
                     mean RR (dimensionless). Regular sinus rhythm is typically < 0.05-0.08; atrial
                     fibrillation usually well above 0.1. A hint for the reader, not a diagnosis.
    n_beats          R peaks found
    qrs_duration_ms  median QRS duration over the beats whose delineation is plausible (None when
                     fewer than 3 beats, or fewer than half the beats, could be delineated)
    lead             the lead measured ("II" unless lead II is poor)
    quality          NeuroKit2 ``ecg_quality(method="templatematch")`` of that lead: mean correlation
                     of each beat with the lead's average beat (Orphanidou et al. 2015), 0-1;
                     below 0.66 the strip is considered unreliable
    warnings         list of plain-language notes (lead fallback, QRS not measured ...)
    method           short description of how the numbers were obtained

and, only when nothing could be measured, ``error`` with the reason (the other values are None).
``measure`` never raises.

How: the lead is resampled to 250 Hz (records sampled faster; the numbers are unchanged within a
few ms and it halves the cost), band-passed with ``nk.ecg_clean(method="biosppy")`` (FIR 0.67-45 Hz,
zero phase); R peaks come from ``nk.ecg_peaks`` (NeuroKit method), signal quality from
``nk.ecg_quality``, and QRS on/offsets from ``nk.ecg_delineate(method="dwt")`` (discrete wavelet
delineation, Martinez et al. 2004). Beats whose onset/offset are implausible (QRS outside
40-250 ms, onset > 150 ms before or offset > 200 ms after the R peak) are dropped before the median.

Caveats, measured on the 30 CinC 2021 sample records: the DWT delineation needs the band-limited
signal (on NeuroKit's default high-pass-only cleaning it put QRS onsets near the P wave and gave
~160 ms for normal ECGs); NeuroKit's "prominence" delineator is 10x faster but measures the R-wave
base (capped at 100 ms), so it cannot show a wide QRS. Even with DWT the QRS duration is a one-lead
estimate (about ±20 ms against the tracing, and sometimes too long in slow rhythms, where the
onset search can start in the P wave); present it as computer-measured.

If lead II is missing, non-finite, or has poor quality (< 0.66) or too few beats, the three other
leads with the largest amplitude are tried and the one with the best quality is used.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np

from datasets.ecg.record import EcgRecord
from datasets.ecg.transforms import Resample

__all__ = ["measure", "MEASURE_KEYS"]

PREFERRED_LEAD = "II"
MIN_QUALITY = 0.66  # Orphanidou et al. 2015 acceptability threshold for template correlation
ANALYSIS_RATE = 250.0
MIN_BEATS = 3
FALLBACK_CANDIDATES = 3
METHOD = "neurokit2 at 250 Hz: ecg_clean(biosppy) + ecg_peaks + ecg_quality(templatematch) + ecg_delineate(dwt)"

MEASURE_KEYS = (
    "heart_rate_bpm", "rr_mean_ms", "rr_sd_ms", "rr_irregularity", "n_beats",
    "qrs_duration_ms", "lead", "quality",
)

_RESAMPLE = Resample(ANALYSIS_RATE)

# Plausibility limits for one delineated beat (ms).
_QRS_MIN_MS, _QRS_MAX_MS = 40.0, 250.0
_ONSET_BEFORE_R_MAX_MS = 150.0
_OFFSET_AFTER_R_MAX_MS = 200.0


_blas_controller: Any = None


def _single_threaded_blas():
    """One BLAS thread while measuring. The arrays are small; on a busy 2-core host OpenBLAS worker
    threads spinning between calls made measure() 2-3x slower (threadpoolctl ships with NeuroKit2's
    scikit-learn dependency; without it this is a no-op)."""
    global _blas_controller
    try:
        if _blas_controller is None:
            from threadpoolctl import ThreadpoolController

            _blas_controller = ThreadpoolController()
        return _blas_controller.limit(limits=1, user_api="blas")
    except Exception:
        return contextlib.nullcontext()


def _empty() -> dict[str, Any]:
    out: dict[str, Any] = {key: None for key in MEASURE_KEYS}
    out["warnings"] = []
    out["method"] = METHOD
    return out


def _round(value: float | None, digits: int = 1) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


class _LeadAnalysis:
    """Cleaned signal, R peaks and quality of one lead."""

    def __init__(self, name: str, raw: np.ndarray, rate: float):
        import neurokit2 as nk

        self.name = name
        self.rate = rate
        self.cleaned = np.asarray(nk.ecg_clean(raw, sampling_rate=rate, method="biosppy"), dtype=np.float64)
        _, info = nk.ecg_peaks(self.cleaned, sampling_rate=rate, method="neurokit")
        self.rpeaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
        self.quality: float | None = None
        if len(self.rpeaks) >= MIN_BEATS:
            quality = nk.ecg_quality(self.cleaned, rpeaks=self.rpeaks, sampling_rate=rate, method="templatematch")
            quality = float(np.nanmean(np.asarray(quality, dtype=np.float64)))
            self.quality = quality if math.isfinite(quality) else None

    @property
    def usable(self) -> bool:
        return len(self.rpeaks) >= MIN_BEATS and self.quality is not None

    @property
    def good(self) -> bool:
        return self.usable and self.quality >= MIN_QUALITY  # type: ignore[operator]


def _analyse(name: str, raw: np.ndarray, rate: float) -> _LeadAnalysis | None:
    if raw.size == 0 or not np.isfinite(raw).all() or np.ptp(raw) <= 0:
        return None
    try:
        if rate > ANALYSIS_RATE + 1e-6:
            resampled = _RESAMPLE({"signals": raw, "sampling_rate": rate})
            raw, rate = resampled["signals"], float(resampled["sampling_rate"])
        return _LeadAnalysis(name, raw, rate)
    except Exception:  # NeuroKit raises on signals it cannot process (too short, no peaks ...)
        return None


def _qrs_duration(lead: _LeadAnalysis) -> tuple[float | None, str | None]:
    """Median plausible QRS duration (ms) from NeuroKit2 DWT delineation, or (None, why)."""
    import neurokit2 as nk

    try:
        _, waves = nk.ecg_delineate(lead.cleaned, lead.rpeaks, sampling_rate=lead.rate, method="dwt")
    except Exception as exc:
        return None, f"QRS duration not measured: delineation failed ({type(exc).__name__})"
    onsets = np.asarray(waves.get("ECG_R_Onsets", []), dtype=np.float64)
    offsets = np.asarray(waves.get("ECG_R_Offsets", []), dtype=np.float64)
    n = min(len(onsets), len(offsets), len(lead.rpeaks))
    if n == 0:
        return None, "QRS duration not measured: no QRS boundaries found"
    ms = 1000.0 / lead.rate
    r = lead.rpeaks[:n].astype(np.float64)
    onsets, offsets = onsets[:n], offsets[:n]
    with np.errstate(invalid="ignore"):
        duration = (offsets - onsets) * ms
        ok = (
            np.isfinite(duration)
            & (duration >= _QRS_MIN_MS) & (duration <= _QRS_MAX_MS)
            & (onsets <= r) & ((r - onsets) * ms <= _ONSET_BEFORE_R_MAX_MS)
            & (offsets >= r) & ((offsets - r) * ms <= _OFFSET_AFTER_R_MAX_MS)
        )
    kept = int(ok.sum())
    if kept < MIN_BEATS or kept < 0.5 * len(lead.rpeaks):
        return None, (
            f"QRS duration not measured: QRS boundaries were found reliably in only {kept} "
            f"of {len(lead.rpeaks)} beats in lead {lead.name}"
        )
    return float(np.median(duration[ok])), None


def measure(record: EcgRecord) -> dict[str, Any]:
    """Heart rate, RR statistics, irregularity, QRS duration and signal quality of ``record``.

    Never raises: on failure the numbers are None and ``error`` says why.
    """
    out = _empty()
    try:
        with warnings.catch_warnings(), _single_threaded_blas():
            warnings.simplefilter("ignore")  # NeuroKit warns freely on short or noisy strips
            _measure_into(record, out)
    except Exception as exc:  # last line of defence: measurements must not break a read
        for key in MEASURE_KEYS:
            out[key] = None
        out["error"] = f"measurement failed ({type(exc).__name__}: {exc})"
    return out


def _measure_into(record: EcgRecord, out: dict[str, Any]) -> None:
    signals = np.asarray(record.signals, dtype=np.float64)
    leads = list(record.leads)
    try:
        rate = float(record.sampling_rate)
    except (TypeError, ValueError):
        rate = float("nan")
    if signals.ndim != 2 or signals.shape[0] != len(leads) or not leads:
        out["error"] = "no usable signals (expected one row of samples per lead)"
        return
    if not math.isfinite(rate) or rate <= 0:
        out["error"] = f"invalid sampling rate {record.sampling_rate!r}"
        return

    chosen: _LeadAnalysis | None = None
    preferred = None
    if PREFERRED_LEAD in leads:
        preferred = _analyse(PREFERRED_LEAD, signals[leads.index(PREFERRED_LEAD)], rate)
        if preferred is not None and preferred.good:
            chosen = preferred

    if chosen is None:
        # Lead II missing or poor: try the leads with the largest QRS amplitude, keep the best quality.
        tried = [preferred] if preferred is not None and preferred.usable else []
        others = [(i, name) for i, name in enumerate(leads) if name != PREFERRED_LEAD and np.isfinite(signals[i]).all()]
        amplitude = []
        for i, name in others:
            row = signals[i]
            amplitude.append((float(np.percentile(row, 99.5) - np.percentile(row, 0.5)), i, name))
        amplitude.sort(reverse=True)
        for _, i, name in amplitude[:FALLBACK_CANDIDATES]:
            analysis = _analyse(name, signals[i], rate)
            if analysis is not None and analysis.usable:
                tried.append(analysis)
        if tried:
            chosen = max(tried, key=lambda a: a.quality)  # type: ignore[arg-type,return-value]
            if PREFERRED_LEAD not in leads:
                out["warnings"].append(f"lead {PREFERRED_LEAD} not available; measured on lead {chosen.name}")
            elif chosen.name != PREFERRED_LEAD:
                out["warnings"].append(f"lead {PREFERRED_LEAD} is of poor quality; measured on lead {chosen.name}")
            if not chosen.good:
                out["warnings"].append(f"signal quality is low ({chosen.quality:.2f}); check the numbers against the tracing")

    if chosen is None:
        out["error"] = f"no lead with at least {MIN_BEATS} detectable heartbeats (noisy or flat recording?)"
        return

    rr_ms = np.diff(chosen.rpeaks).astype(np.float64) * 1000.0 / chosen.rate
    rr_mean = float(np.mean(rr_ms))
    out["lead"] = chosen.name
    out["quality"] = _round(chosen.quality, 3)
    out["n_beats"] = int(len(chosen.rpeaks))
    out["rr_mean_ms"] = _round(rr_mean)
    out["heart_rate_bpm"] = _round(60000.0 / rr_mean)
    out["rr_sd_ms"] = _round(float(np.std(rr_ms, ddof=1))) if len(rr_ms) >= 2 else None
    if len(rr_ms) >= 2:
        rmssd = float(np.sqrt(np.mean(np.diff(rr_ms) ** 2)))
        out["rr_irregularity"] = _round(rmssd / rr_mean, 4)

    qrs, why = _qrs_duration(chosen)
    out["qrs_duration_ms"] = _round(qrs)
    if why:
        out["warnings"].append(why)

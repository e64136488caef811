"""Per-lead amplitudes of the median beat, frontal axes and voltage criteria.

Amplitudes are in mV relative to the lead's PR-segment level (the isoelectric reference carts use):
Q and S are negative numbers (the deepest negative deflection before / after the R wave), R the
tallest positive one; ST at the J point (QRS offset) and 60 ms later, each the mean over 10 ms; T the
signed extreme between J + 80 ms and the T end.
"""

from __future__ import annotations

import math

import numpy as np

from datasets.ecg.measure.beats import Beats
from datasets.ecg.measure.delineate import Fiducials
from datasets.ecg.record import STANDARD_LEADS
from datasets.vocabulary.ecg_measurements import EcgLeadMeasurement as L
from datasets.vocabulary.ecg_measurements import EcgMeasurement


def _mean_at(signal: np.ndarray, at: int, half: int) -> np.ndarray:
    at = int(np.clip(at, half, signal.shape[1] - half - 1))
    return signal[:, at - half : at + half + 1].mean(axis=1)


def _signed_extreme(window: np.ndarray) -> np.ndarray:
    idx = np.argmax(np.abs(window), axis=1)
    return window[np.arange(window.shape[0]), idx]


def lead_amplitudes(beats: Beats, fid: Fiducials) -> dict[L, np.ndarray]:
    """Arrays of 12 values (STANDARD_LEADS order) per ``EcgLeadMeasurement``; NaN where not measurable."""
    ms = beats.rate / 1000.0
    x = beats.median - fid.baseline[:, None]
    qrs = x[:, fid.qrs_on : fid.qrs_off + 1]
    r_idx = np.argmax(qrs, axis=1)
    r_amp = np.maximum(qrs[np.arange(len(qrs)), r_idx], 0.0)
    before = np.arange(qrs.shape[1])[None, :] < r_idx[:, None]
    q_amp = np.minimum(np.where(before, qrs, 0.0).min(axis=1), 0.0)
    s_amp = np.minimum(np.where(~before, qrs, 0.0).min(axis=1), 0.0)
    half = max(1, int(5 * ms))
    st_j = _mean_at(x, fid.qrs_off, half)
    st_j60 = _mean_at(x, fid.qrs_off + int(60 * ms), half)
    nan = np.full(len(x), np.nan)
    t_amp = nan
    if fid.t_end is not None and fid.t_end - (fid.qrs_off + int(80 * ms)) > 2:
        t_amp = _signed_extreme(x[:, fid.qrs_off + int(80 * ms) : fid.t_end])
    p_amp = nan
    if fid.p_on is not None and fid.p_off is not None and fid.p_off - fid.p_on > 2:
        p_amp = _signed_extreme(x[:, fid.p_on : fid.p_off])
    return {
        L.P_AMPLITUDE: p_amp,
        L.Q_AMPLITUDE: q_amp,
        L.R_AMPLITUDE: r_amp,
        L.S_AMPLITUDE: s_amp,
        L.ST_J: st_j,
        L.ST_J60: st_j60,
        L.T_AMPLITUDE: t_amp,
    }


def frontal_axis(beats: Beats, fid: Fiducials, start: int | None, stop: int | None) -> float | None:
    """Frontal-plane axis (degrees, -180..180] of the net area of a wave in leads I and II:
    E_x = area(I), E_y = (2·area(II) − area(I)) / √3 (Einthoven's triangle, aVF at +90°)."""
    if start is None or stop is None or stop - start < 2:
        return None
    x = beats.median[:2, start:stop] - fid.baseline[:2, None]
    area_i, area_ii = x.sum(axis=1) / beats.rate
    ex, ey = area_i, (2.0 * area_ii - area_i) / math.sqrt(3.0)
    if math.hypot(ex, ey) < 1e-6:
        return None
    return math.degrees(math.atan2(ey, ex))


def voltage_criteria(amps: dict[L, np.ndarray]) -> dict[EcgMeasurement, float]:
    """Sokolow-Lyon: S(V1) + max R(V5, V6); Cornell: R(aVL) + S(V3) — depths as positive mV."""
    lead = {name: i for i, name in enumerate(STANDARD_LEADS)}
    r, s = amps[L.R_AMPLITUDE], amps[L.S_AMPLITUDE]
    sokolow = -s[lead["V1"]] + max(r[lead["V5"]], r[lead["V6"]])
    cornell = r[lead["aVL"]] - s[lead["V3"]]
    return {EcgMeasurement.SOKOLOW_LYON: float(sokolow), EcgMeasurement.CORNELL: float(cornell)}

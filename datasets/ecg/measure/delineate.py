"""Global wave boundaries of the median beat, from all leads at once (as 12-lead carts do).

QRS onset and offset come from the spatial velocity (the length of the vector of sample-to-sample
changes over the eight independent leads); P and T boundaries from the spatial magnitude (the length
of the vector of lead voltages relative to the PR-segment level) with the trapezium-area method of
Zhang et al. 2006 ("An algorithm for robust and efficient location of T-wave ends"), applied to the
T end and, mirrored, to the P onset and offset. One boundary per beat for all leads: the earliest
onset and the latest offset in any lead, which is what the IEC 60601-2-25 global intervals mean.

Thresholds (fractions of the QRS spatial-velocity peak) were set on the PTB-XL folds 1–8 records
labelled NORM so that their medians match published normal values of cart measurements (QRS ≈ 90 ms,
PR ≈ 155 ms, QT ≈ 390 ms at ~70 bpm); the Philips and Mortara files were not used for tuning (they are
the accuracy check, docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.ecg.measure.beats import INDEPENDENT, Beats

QRS_ON_FRACTION = 0.035
QRS_OFF_FRACTION = 0.035
T_MIN_FALL_MV = 0.08
"""The T wave must fall by 0.08 mV (spatial magnitude) from its peak to its end for a QT to be measured:
flatter T waves (≈ 3 % of PTB-XL records) give no QT rather than a guess that could read as QTc > 500."""
P_EDGE_FRACTION = 0.2
"""A P wave starts / ends where its spatial magnitude is within 20 % of its height above the local floor (then
followed down its steepest tangent to that floor)."""
P_MIN_MAGNITUDE_MV = 0.035
"""Below this spatial P amplitude (mV) no P wave is measured (AF, junctional rhythm, noise)."""


@dataclass
class Fiducials:
    """Sample indices inside the median beat (None where a wave was not found)."""

    qrs_on: int
    qrs_off: int
    t_end: int | None
    p_on: int | None
    p_off: int | None
    p_magnitude_mv: float
    baseline: np.ndarray  # per-lead PR-segment level (mV) of the diagnostic median beat


def _first_below(values: np.ndarray, start: int, stop: int, threshold: float, run: int) -> int:
    """First index from ``start`` toward ``stop`` (either direction) where ``values`` stays below
    ``threshold`` for ``run`` samples; ``stop`` when it never does."""
    step = 1 if stop >= start else -1
    idx = np.arange(start, stop, step)
    if len(idx) == 0:
        return stop
    below = values[idx] < threshold
    if run > 1:  # a run of `run` consecutive True values starting at position k
        window = np.convolve(below.astype(np.int8), np.ones(run, dtype=np.int8), mode="full")[run - 1 :]
        below = window >= run
    hits = np.flatnonzero(below)
    return int(idx[hits[0]]) if len(hits) else stop


def _trapezium_end(signal: np.ndarray, peak: int, limit: int) -> int:
    """Zhang et al. 2006: from the steepest descent after ``peak`` (toward ``limit``, either side), the
    point maximising the area of the trapezium to the far reference is where the wave ends."""
    step = 1 if limit >= peak else -1
    seg = signal[peak : limit + step : step] if step == 1 else signal[limit : peak + 1][::-1]
    if len(seg) < 4:
        return limit
    slope = np.diff(seg)
    m = int(np.argmin(slope))  # steepest descent toward the baseline
    t = np.arange(m, len(seg))
    r = len(seg) - 1
    area = 0.5 * (seg[m] - seg[t]) * (2 * r - t - m)
    return peak + step * int(t[int(np.argmax(area))])


def _largest_hump(segment: np.ndarray) -> int:
    """Index of the tallest local maximum inside ``segment`` (not at its edges, where the previous T
    wave's tail or the QRS onset would win a plain argmax); 0 when there is none."""
    inner = np.flatnonzero((segment[1:-1] >= segment[:-2]) & (segment[1:-1] > segment[2:])) + 1
    return int(inner[np.argmax(segment[inner])]) if len(inner) else 0


def _level_crossing(signal: np.ndarray, peak: int, limit: int, fraction: float) -> int:
    """From ``peak`` toward ``limit``, the first sample where the wave has fallen to ``fraction`` of its
    height above the local isoelectric floor: the lowest level reached before the signal rises again
    (a neighbouring wave, e.g. the previous T wave at fast rates, must not pull the boundary out)."""
    step = 1 if limit >= peak else -1
    side = signal[peak : limit + 1] if step == 1 else signal[limit : peak + 1][::-1]
    if len(side) < 3:
        return limit
    running_min = np.minimum.accumulate(side)
    height = side[0] - running_min
    # a rise after the wave has mostly ended (not the notch of a bifid P wave)
    mostly_ended = running_min < side[0] - 0.6 * (side[0] - side.min())
    rising = np.flatnonzero(mostly_ended & (side - running_min > 0.3 * height))
    if len(rising):
        side = side[: int(rising[0])]
    floor = float(side.min())
    below = np.flatnonzero(side <= floor + fraction * (side[0] - floor))
    if not len(below):
        return limit
    cross = int(below[0])
    # Tangent method: from the steepest point between the peak and the crossing, follow the slope down
    # to the floor (the wave's true start lies before the level crossing by its rise time).
    slopes = -np.diff(side[: cross + 1])
    if len(slopes) and slopes.max() > 0:
        k = int(np.argmax(slopes))
        cross = max(cross, min(len(side) - 1, round(k + (side[k] - floor) / slopes[k])))
    return peak + step * cross


def delineate(beats: Beats, rr_ms: float) -> Fiducials | None:
    rate = beats.rate
    ms = rate / 1000.0
    f = beats.fiducial
    sm = beats.median_smooth[list(INDEPENDENT)]
    velocity = np.sqrt(np.sum(np.diff(sm, axis=1) ** 2, axis=0))
    lo, hi = f - int(60 * ms), f + int(60 * ms)
    peak = lo + int(np.argmax(velocity[lo:hi]))
    vmax = float(velocity[peak])
    if vmax <= 0:
        return None
    run = max(1, int(8 * ms))
    # The earliest and latest of the high-velocity region around the fiducial bound the QRS.
    on = _first_below(velocity, peak, max(0, f - int(160 * ms)), QRS_ON_FRACTION * vmax, run)
    off = _first_below(velocity, peak, min(len(velocity) - 1, f + int(180 * ms)), QRS_OFF_FRACTION * vmax, run)
    qrs_on, qrs_off = on, off + 1

    base_window = slice(max(0, qrs_on - int(20 * ms)), max(1, qrs_on - int(6 * ms)))
    baseline_smooth = sm[:, base_window].mean(axis=1, keepdims=True)
    magnitude = np.sqrt(np.sum((sm - baseline_smooth) ** 2, axis=0))

    # P wave first: within 320 ms before the QRS onset (and after the previous T wave at fast rates).
    p_from = max(0, qrs_on - int(min(320.0, max(120.0, 0.45 * rr_ms)) * ms))
    p_to = qrs_on - int(20 * ms)
    p_on = p_off = None
    p_mag = 0.0
    if p_to - p_from > int(40 * ms):
        p_peak = p_from + _largest_hump(magnitude[p_from:p_to])
        p_mag = float(magnitude[p_peak])
        if p_mag >= P_MIN_MAGNITUDE_MV and p_from < p_peak < p_to - 1:
            p_on = _level_crossing(magnitude, p_peak, max(0, p_from - int(60 * ms)), P_EDGE_FRACTION)
            p_off = _level_crossing(magnitude, p_peak, qrs_on, P_EDGE_FRACTION)

    # T wave: from J + 80 ms to 700 ms after the onset, or before the next beat's P wave (one RR after
    # this one's P onset) or, without a P wave, 90 % of the RR.
    next_beat_ms = (p_on - qrs_on) / ms + rr_ms - 20.0 if p_on is not None else 0.9 * rr_ms - 60.0
    t_from = qrs_off + int(80 * ms)
    t_limit = min(len(magnitude) - 1, qrs_on + int(min(700.0, max(280.0, next_beat_ms)) * ms))
    t_end = None
    if t_limit - t_from > int(40 * ms):
        t_peak = t_from + int(np.argmax(magnitude[t_from:t_limit]))
        t_end = _trapezium_end(magnitude, t_peak, t_limit)
        if magnitude[t_peak] - magnitude[t_end] < T_MIN_FALL_MV:
            t_end = None  # a flat T wave has no end to find: no QT rather than a guessed one
    baseline = beats.median[:, base_window].mean(axis=1)
    return Fiducials(
        qrs_on=qrs_on, qrs_off=qrs_off, t_end=t_end, p_on=p_on, p_off=p_off, p_magnitude_mv=p_mag, baseline=baseline
    )

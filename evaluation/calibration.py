"""Calibration: expected calibration error (ECE) and the bins of a reliability diagram."""

from __future__ import annotations

import numpy as np


def reliability_bins(y, p, n_bins: int = 10, strategy: str = "uniform") -> dict[str, np.ndarray]:
    """Per bin: count, mean predicted probability, observed frequency. ``strategy``: ``uniform``
    (equal-width bins on [0, 1]) or ``quantile`` (equal-count bins). Missing labels (NaN) are dropped."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    keep = ~np.isnan(y)
    y, p = (y[keep] > 0.5).astype(np.float64), np.clip(p[keep], 0.0, 1.0)
    if strategy == "quantile" and len(p):
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
        edges[0], edges[-1] = 0.0, 1.0
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"unknown binning strategy {strategy!r} (uniform, quantile)")
    # right-closed bins except the first: p = 0 goes in bin 0, p = 1 in the last
    which = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, len(edges) - 2)
    k = len(edges) - 1
    count = np.bincount(which, minlength=k).astype(np.float64)
    sum_p = np.bincount(which, weights=p, minlength=k)
    sum_y = np.bincount(which, weights=y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        freq = np.where(count > 0, sum_y / count, np.nan)
    return {"edges": edges, "count": count, "mean_predicted": mean_p, "observed": freq}


def expected_calibration_error(y, p, n_bins: int = 10, strategy: str = "uniform") -> float:
    """ECE = sum_b (n_b / n) |observed_b − mean_predicted_b| (NaN with no cases)."""
    bins = reliability_bins(y, p, n_bins, strategy)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    used = bins["count"] > 0
    return float(np.sum(bins["count"][used] / n * np.abs(bins["observed"][used] - bins["mean_predicted"][used])))


def brier_score(y, p) -> float:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    keep = ~np.isnan(y)
    return float(np.mean((p[keep] - (y[keep] > 0.5)) ** 2)) if keep.any() else float("nan")

"""Stratified bootstrap: percentile confidence intervals for any set of numbers computed from cases.

Cases are resampled with replacement *within strata* (for a binary label: positives and negatives
separately; for multi-label data: the pattern of labels), so every resample keeps the prevalence of
the evaluation set and rank metrics stay defined as long as the original data define them.

A statistic is a function ``f(index) -> dict[str, float]`` over an index array into the cases; the
same index array is used for all numbers of one replicate (and, in ``compare``, for both models: a
paired bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from evaluation import DEFAULT_N_BOOT

DEFAULT_ALPHA = 0.05


def strata_from_labels(Y: np.ndarray, min_size: int = 5) -> np.ndarray:
    """One stratum id per case: the case's pattern of (0/1/missing) labels. Patterns seen fewer than
    ``min_size`` times are pooled into one stratum (a singleton stratum would be drawn identically in
    every resample and shrink the interval)."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    coded = np.where(np.isnan(Y), 2, Y > 0.5).astype(np.int64)
    _, strata, counts = np.unique(coded, axis=0, return_inverse=True, return_counts=True)
    strata = strata.ravel()
    rare = counts[strata] < min_size
    strata[rare] = -1
    return strata


def stratified_resample(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one stratified bootstrap resample (same size per stratum as the original)."""
    strata = np.asarray(strata)
    out = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        out.append(members[rng.integers(0, len(members), len(members))])
    return np.concatenate(out)


class _Groups:
    """Precomputed stratum membership (resampling many times)."""

    def __init__(self, strata: np.ndarray):
        strata = np.asarray(strata)
        self.members = [np.flatnonzero(strata == v) for v in np.unique(strata)]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([m[rng.integers(0, len(m), len(m))] for m in self.members])


def bootstrap(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    strata: np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    return_replicates: bool = False,
) -> dict[str, dict[str, float]]:
    """Point estimate and percentile (1−alpha) interval for every number ``statistic`` returns.

    Returns ``{name: {"value", "ci_low", "ci_high", "n_boot"}}`` where ``n_boot`` counts replicates in
    which the number was defined (not NaN). With ``return_replicates`` each entry also has
    ``"replicates"`` (np.ndarray).
    """
    groups = _Groups(np.zeros(n, dtype=int) if strata is None else strata)
    rng = np.random.default_rng(seed)
    point = statistic(np.arange(n))
    names = list(point)
    reps = np.full((n_boot, len(names)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined metrics in single replicates are expected
        for b in range(n_boot):
            values = statistic(groups.draw(rng))
            reps[b] = [values.get(k, np.nan) for k in names]
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        column = reps[:, j]
        valid = column[~np.isnan(column)]
        if len(valid):
            low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
        else:
            low = high = float("nan")
        entry = {"value": float(point[name]), "ci_low": float(low), "ci_high": float(high), "n_boot": int(len(valid))}
        if return_replicates:
            entry["replicates"] = column
        out[name] = entry
    return out

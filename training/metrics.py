"""Per-label metrics and decision thresholds shared by the trainers (any label list).

Targets may hold NaN (unknown: an uncertain CheXpert mention, a finding a class folder does not
name); every function here looks at each label's known cells only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.metrics import auroc

THRESHOLD_RANGE = (0.05, 0.95)


def per_label_auroc(Y: np.ndarray, P: np.ndarray, codes: Sequence[str]) -> dict[str, float | None]:
    """AUROC per label code (evaluation.metrics.auroc, the project's one definition); None where
    the data hold only one class for a label."""
    out: dict[str, float | None] = {}
    for index, code in enumerate(codes):
        value = auroc(Y[:, index], P[:, index], warn=False)
        out[code] = None if np.isnan(value) else value
    return out


def known(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One label's targets and scores where the target is known (not NaN)."""
    mask = ~np.isnan(y)
    return y[mask], p[mask]


def macro(values: dict[str, float | None]) -> float:
    present = [v for v in values.values() if v is not None]
    return float(np.mean(present)) if present else float("nan")


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes: Sequence[str]) -> dict[str, float]:
    """Per-label decision thresholds on validation data: Youden's J (max sensitivity +
    specificity − 1) or max F1; 0.5 for 'fixed' and for labels with a single class.

    The threshold is the midpoint between the lowest score called positive at the optimum and the
    next lower score — not the score itself, which would sit on the edge of the optimal interval
    (with well-separated classes, just under the weakest positive). Ties go to the cut closest to
    0.5, and cuts are clipped to THRESHOLD_RANGE: on a few hundred validation records one sample
    can otherwise push a label to fire on almost everything (or nothing) once data shift.
    """
    thresholds: dict[str, float] = {}
    for index, code in enumerate(codes):
        y, p = known(Y[:, index], P[:, index].astype(np.float64))
        y = y > 0.5
        positives = int(y.sum())
        if method == "fixed" or not 0 < positives < len(y):
            thresholds[code] = 0.5
            continue
        order = np.argsort(-p, kind="stable")
        scores, truth = p[order], y[order]
        # Calling "positive" every score >= scores[i], for i at the end of each run of equal scores.
        ends = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
        tp = np.cumsum(truth)[ends].astype(np.float64)
        fp = np.cumsum(~truth)[ends].astype(np.float64)
        if method == "youden":
            objective = tp / positives - fp / (len(y) - positives)
        else:
            objective = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1e-12)
        next_lower = np.r_[scores[ends[:-1] + 1], 0.0]
        cuts = (scores[ends] + next_lower) / 2
        tied = np.flatnonzero(objective >= objective.max() - 1e-12)
        best = tied[np.argmin(np.abs(cuts[tied] - 0.5))]
        thresholds[code] = float(np.clip(cuts[best], *THRESHOLD_RANGE))
    return thresholds


def operating_points(
    Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float], codes: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Sensitivity and specificity per label at the card's thresholds."""
    out = {}
    for index, code in enumerate(codes):
        y, p = known(Y[:, index], P[:, index])
        y, predicted = y > 0.5, p >= thresholds[code]
        positives, negatives = y.sum(), (~y).sum()
        out[code] = {
            "sensitivity": float((predicted & y).sum() / positives) if positives else None,
            "specificity": float((~predicted & ~y).sum() / negatives) if negatives else None,
        }
    return out


def json_safe(value: Any) -> Any:
    """NaN → None and NumPy scalars → Python, so the card is strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if np.isnan(value) or np.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value

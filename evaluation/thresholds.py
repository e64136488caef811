"""Operating points: the threshold that reaches a target sensitivity, per site, on validation data,
and writing them into a registered model's card (``card.metrics["site_thresholds"]``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evaluation.metrics import threshold_metrics
from models.card import SITE_THRESHOLDS_KEY  # the pre-readers read them back from the card
from models.registry import ModelRegistry


def threshold_for_sensitivity(y, p, target: float) -> float | None:
    """The highest threshold t (calling ``p >= t`` positive) whose sensitivity is >= ``target``;
    None when there are no positives. Choosing the highest such t keeps specificity as high as
    possible at the required sensitivity."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    keep = ~np.isnan(y)
    positives = np.sort(p[keep][y[keep] > 0.5])[::-1]
    if len(positives) == 0:
        return None
    needed = int(np.ceil(target * len(positives) - 1e-12))
    needed = min(max(needed, 1), len(positives))
    return float(positives[needed - 1])


def site_operating_points(
    Y: np.ndarray,
    P: np.ndarray,
    labels: Sequence[str],
    sites: Sequence[str],
    target_sensitivity: float = 0.9,
    min_pos: int = 5,
) -> dict[str, dict[str, dict]]:
    """``{site: {label: {threshold, sensitivity, specificity, n, n_pos, warning}}}``; sites or labels
    with fewer than ``min_pos`` positives get threshold None (keep the card's global threshold)."""
    sites = np.asarray([str(s) for s in sites])
    out: dict[str, dict[str, dict]] = {}
    for site in sorted(set(sites)):
        mask = sites == site
        per_label = {}
        for j, code in enumerate(labels):
            y, p = Y[mask, j], P[mask, j]
            known = ~np.isnan(y)
            n_pos = int((y[known] > 0.5).sum())
            entry = {
                "n": int(known.sum()),
                "n_pos": n_pos,
                "target_sensitivity": target_sensitivity,
                "threshold": None,
                "sensitivity": None,
                "specificity": None,
                "warning": "",
            }
            if n_pos < min_pos:
                entry["warning"] = f"{n_pos} positives < {min_pos}: global threshold kept"
            else:
                t = threshold_for_sensitivity(y, p, target_sensitivity)
                m = threshold_metrics(y, p, t)
                entry.update(threshold=t, sensitivity=m["sensitivity"], specificity=m["specificity"])
            per_label[code] = entry
        out[site] = per_label
    return out


def write_site_thresholds(model, points: dict, source: str = "", registry=None) -> dict:
    """Add the operating points to the registered model's card metrics (card.json in a file
    registry's version folder; a version tag in MLflow).

    Only ``card.metrics`` gains a key; nothing else in the card changes. ``model`` is a
    ``models.registry.RegisteredModel``; without ``registry``, the file registry that holds
    ``model.path``. Returns the stored entry.
    """
    if registry is None:
        registry = ModelRegistry(Path(model.path).parents[1])
    entry = {"computed_at": datetime.now(UTC).isoformat(), "source": source, "sites": points}
    registry.annotate(model, metrics={SITE_THRESHOLDS_KEY: entry})
    return entry

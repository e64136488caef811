"""The held-out report a card carries: per label, AUROC and the sensitivity / specificity at the
validation-chosen threshold on a test split that nothing was tuned on, each with a stratified
bootstrap 95 % interval (``evaluation.bootstrap``), and the counts behind them.

Only labels with both classes in the test split are reported; the others have no defined AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.bootstrap import bootstrap
from evaluation.metrics import auroc, threshold_metrics

N_BOOT = 1000


def held_out_report(
    Y: np.ndarray,
    P: np.ndarray,
    thresholds: dict[str, float],
    codes: Sequence[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{code: {auroc: {value, ci_low, ci_high}, sensitivity: {...}, specificity: {...}, threshold, n, n_pos}}``."""
    report: dict[str, dict[str, Any]] = {}
    for index, code in enumerate(codes):
        y, p = np.asarray(Y[:, index], dtype=np.float64), np.asarray(P[:, index], dtype=np.float64)
        keep = ~np.isnan(y)
        y, p = y[keep] > 0.5, p[keep]
        if not 0 < int(y.sum()) < len(y):
            continue
        threshold = float(thresholds[code])

        def statistic(sample: np.ndarray, y=y, p=p, threshold=threshold) -> dict[str, float]:
            at = threshold_metrics(y[sample], p[sample], threshold)
            return {
                "auroc": auroc(y[sample], p[sample], warn=False),
                "sensitivity": at["sensitivity"],
                "specificity": at["specificity"],
            }

        intervals = bootstrap(statistic, len(y), strata=y.astype(int), n_boot=n_boot, seed=seed)
        report[code] = {
            name: {key: round(value, 4) for key, value in entry.items() if key != "n_boot"}
            for name, entry in intervals.items()
        }
        report[code].update(threshold=round(threshold, 4), n=len(y), n_pos=int(y.sum()))
    return report


def format_report(report: dict[str, dict[str, Any]]) -> str:
    """One line per label, for logs and docs."""
    lines = []
    for code, entry in report.items():
        parts = [
            f"{name} {entry[name]['value']:.3f} ({entry[name]['ci_low']:.3f}–{entry[name]['ci_high']:.3f})"
            for name in ("auroc", "sensitivity", "specificity")
        ]
        lines.append(
            f"{code}: " + ", ".join(parts) + f" at {entry['threshold']:.3f}; n={entry['n']} ({entry['n_pos']} positive)"
        )
    return "\n".join(lines)

"""Classification metrics for multi-label models: per label, macro/micro, PTB-XL protocol, CinC score.

All functions take reference labels ``y`` (0/1, NaN = unknown/ignored) and scores ``s`` (probabilities).
Rank metrics are computed here in NumPy (not through scikit-learn) so that the bootstrap can call them
thousands of times; tests check they equal scikit-learn's ``roc_auc_score`` and
``average_precision_score`` including ties. A label whose (non-missing) reference holds only one
class has an undefined AUROC/AUPRC: the result is NaN and a :class:`MetricWarning` is issued.

Threshold metrics use "positive" = ``score >= threshold`` (the convention of models/card.py and serving).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")
RANK_METRICS = ("auroc", "auprc")
ALL_METRICS = RANK_METRICS + THRESHOLD_METRICS


class MetricWarning(UserWarning):
    """A metric is undefined on these data (e.g. a class is absent) and was reported as NaN."""


def _clean(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    keep = ~np.isnan(y)
    return y[keep] > 0.5, s[keep]


def auroc(y, s, *, warn: bool = True, name: str = "") -> float:
    """Area under the ROC curve (Mann–Whitney U with mid-ranks for ties) = sklearn's roc_auc_score."""
    y, s = _clean(y, s)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        if warn:
            warnings.warn(
                f"AUROC{' for ' + name if name else ''} undefined: only one class present "
                f"({n_pos} positives, {n_neg} negatives); reported as NaN",
                MetricWarning,
                stacklevel=2,
            )
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(y, s, *, warn: bool = True, name: str = "") -> float:
    """Average precision (step-wise area under the precision–recall curve) = sklearn's
    average_precision_score: sum over distinct thresholds of (R_n − R_{n−1}) · P_n."""
    y, s = _clean(y, s)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        if warn:
            warnings.warn(
                f"AUPRC{' for ' + name if name else ''} undefined: only one class present "
                f"({n_pos} positives of {len(y)}); reported as NaN",
                MetricWarning,
                stacklevel=2,
            )
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[ends].astype(np.float64)
    called = ends + 1.0
    precision = tp / called
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def confusion_counts(y, s, threshold: float) -> dict[str, int]:
    y, s = _clean(y, s)
    predicted = s >= threshold
    return {
        "tp": int((predicted & y).sum()),
        "fp": int((predicted & ~y).sum()),
        "tn": int((~predicted & ~y).sum()),
        "fn": int((~predicted & y).sum()),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def threshold_metrics(y, s, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, F1 at ``threshold`` (NaN where the denominator is 0)."""
    c = confusion_counts(y, s, threshold)
    return {
        "sensitivity": _ratio(c["tp"], c["tp"] + c["fn"]),
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "ppv": _ratio(c["tp"], c["tp"] + c["fp"]),
        "npv": _ratio(c["tn"], c["tn"] + c["fn"]),
        "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
    }


def label_metrics(y, s, threshold: float, *, warn: bool = True, name: str = "") -> dict[str, float]:
    """All per-label numbers: AUROC, AUPRC, the threshold metrics, n and prevalence counts."""
    y_clean, _ = _clean(y, s)
    out = {"auroc": auroc(y, s, warn=warn, name=name), "auprc": auprc(y, s, warn=warn, name=name)}
    out.update(threshold_metrics(y, s, threshold))
    out["n"] = int(len(y_clean))
    out["n_pos"] = int(y_clean.sum())
    out["threshold"] = float(threshold)
    return out


def _nanmean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def multilabel_metrics(
    Y: np.ndarray,
    P: np.ndarray,
    labels: Sequence[str],
    thresholds: dict[str, float] | Sequence[float],
    *,
    warn: bool = True,
) -> dict:
    """Per-label metrics, their macro average (mean over labels where defined) and micro average
    (all label decisions pooled into one binary problem)."""
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape or Y.ndim != 2 or Y.shape[1] != len(labels):
        raise ValueError(f"Y {Y.shape} and P {P.shape} must both be [n, {len(labels)}]")
    thr = np.array([thresholds[c] for c in labels] if isinstance(thresholds, dict) else thresholds, dtype=np.float64)
    per_label = {code: label_metrics(Y[:, j], P[:, j], thr[j], warn=warn, name=code) for j, code in enumerate(labels)}
    macro = {m: _nanmean([per_label[c][m] for c in labels]) for m in ALL_METRICS}
    # micro: decisions at each label's own threshold; scores shifted so the pooled cut is 0.
    micro_scores = (P - thr[None, :]).ravel()
    y_flat = Y.ravel()
    micro = {
        "auroc": auroc(y_flat, P.ravel(), warn=warn, name="micro"),
        "auprc": auprc(y_flat, P.ravel(), warn=warn, name="micro"),
    }
    micro.update(threshold_metrics(y_flat, micro_scores, 0.0))
    return {"per_label": per_label, "macro": macro, "micro": micro}


def ptbxl_macro_auroc(
    Y: np.ndarray, P: np.ndarray, labels: Sequence[str], label_set: Sequence[str] | None = None, *, warn: bool = True
) -> float:
    """PTB-XL benchmark protocol (Strodthoff et al. 2021): macro AUROC over a label set on the
    test fold (strat_fold 10). Labels absent from the fold are skipped (NaN with a warning)."""
    chosen = list(label_set) if label_set is not None else list(labels)
    values = [
        auroc(Y[:, list(labels).index(code)], P[:, list(labels).index(code)], warn=warn, name=code)
        for code in chosen
        if code in labels
    ]
    return _nanmean(values)


# --------------------------------------------------------------------------------------------------
# PhysioNet/CinC Challenge 2020–2021 "challenge metric"
#
# Our 7 labels are mapped onto one representative scored class of the 2021 Challenge each, and the
# 7×7 weights are the entries of the official 2021 weights.csv for those classes:
#   NORM  → 426783006 sinus rhythm (NSR; also the Challenge's "inactive" class)
#   AF    → 164889003 atrial fibrillation (AF)
#   STACH → 427084000 sinus tachycardia (STach)
#   SBRAD → 426177001 sinus bradycardia (SB)
#   STE   → not a scored 2021 class; proxied by 164934002 T-wave abnormal (TAb), the scored
#           repolarisation class
#   WQRS  → 6374002 bundle branch block (BBB)
#   PREM  → 284470004|63593006 premature atrial contraction (PAC|SVPB)
# The formula is the official one: a "modified confusion matrix" A where record i adds
# 1/|labels_i ∪ outputs_i| to A[j, k] for every true class j and predicted class k; the observed score
# sum(W ∘ A) is normalised so that the perfect classifier scores 1 and the "inactive" classifier
# (always and only the normal class) scores 0.

CHALLENGE_LABELS: tuple[str, ...] = ("NORM", "AF", "STACH", "SBRAD", "STE", "WQRS", "PREM")
CHALLENGE_WEIGHTS = np.array(
    [
        # NORM   AF      STACH   SBRAD   STE     WQRS    PREM
        [1.0, 0.25, 0.375, 0.45, 0.25, 0.275, 0.4125],  # NORM
        [0.25, 1.0, 0.375, 0.3, 0.5, 0.475, 0.3375],  # AF
        [0.375, 0.375, 1.0, 0.425, 0.375, 0.4, 0.4625],  # STACH
        [0.45, 0.3, 0.425, 1.0, 0.3, 0.325, 0.4625],  # SBRAD
        [0.25, 0.5, 0.375, 0.3, 1.0, 0.475, 0.3375],  # STE
        [0.275, 0.475, 0.4, 0.325, 0.475, 1.0, 0.3625],  # WQRS
        [0.4125, 0.3375, 0.4625, 0.4625, 0.3375, 0.3625, 1.0],  # PREM
    ]
)
CHALLENGE_NORMAL = "NORM"


def modified_confusion_matrix(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The Challenge's multi-label confusion matrix (rows: true classes, columns: outputs)."""
    labels = np.asarray(labels) > 0.5
    outputs = np.asarray(outputs) > 0.5
    normalization = np.maximum((labels | outputs).sum(axis=1), 1).astype(np.float64)
    # A[j, k] = sum_i labels[i, j] * outputs[i, k] / normalization[i]
    return (labels / normalization[:, None]).T.astype(np.float64) @ outputs.astype(np.float64)


def challenge_score(
    Y: np.ndarray,
    Yhat: np.ndarray,
    labels: Sequence[str] = CHALLENGE_LABELS,
    weights: np.ndarray | None = None,
    normal: str = CHALLENGE_NORMAL,
) -> float:
    """The PhysioNet/CinC 2020–2021 Challenge metric for binary outputs ``Yhat`` [n, L].

    ``labels`` must be (a permutation of a subset of) CHALLENGE_LABELS unless ``weights`` is given.
    Records with a missing (NaN) reference for any label are dropped.
    """
    labels = list(labels)
    Y = np.asarray(Y, dtype=np.float64)
    Yhat = np.asarray(Yhat, dtype=np.float64)
    keep = ~np.isnan(Y).any(axis=1)
    Y, Yhat = Y[keep], Yhat[keep]
    if weights is None:
        index = [CHALLENGE_LABELS.index(code) for code in labels]
        weights = CHALLENGE_WEIGHTS[np.ix_(index, index)]
    observed = np.nansum(weights * modified_confusion_matrix(Y, Yhat))
    correct = np.nansum(weights * modified_confusion_matrix(Y, Y))
    inactive_outputs = np.zeros_like(Y)
    if normal in labels:
        inactive_outputs[:, labels.index(normal)] = 1
    inactive = np.nansum(weights * modified_confusion_matrix(Y, inactive_outputs))
    if correct == inactive:
        return 0.0
    return float((observed - inactive) / (correct - inactive))

"""Fitting the default ECG model's fusion head (``models.ecg.fusion.FusionHead``) and its card metrics.

Measurement model: per label, an L2 logistic regression on the standardised measurement features of
the training cases; its C is chosen by leave-one-fold-out over PTB-XL folds 1–8 (the CinC samples stay
in every training part), and the out-of-fold probabilities of that C give a cross-validated AUROC on
data the choice of C saw but no fitted weight did. Then, on fold 9: per label, the network's weight
``w`` and the decision threshold. Every AUROC comes with a stratified bootstrap interval.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from evaluation.bootstrap import bootstrap, strata_from_labels
from evaluation.metrics import auroc
from models.ecg.fusion import FusionHead, logit
from training.metrics import choose_thresholds, operating_points

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
N_BOOT = 1000
FOLD_9_CAVEAT = (
    "fold 9 chose the early-stopping epoch, each label's network/measurement weight and threshold: "
    "its AUROCs are optimistic; cv_* are leave-one-fold-out estimates over folds 1-8"
)


def _standardisation(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fill, mean, scale) per feature from training rows (median fill; unit scale for constants)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nanmedian(F, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    filled = np.where(np.isnan(F), fill, F)
    mean, scale = filled.mean(axis=0), filled.std(axis=0)
    return fill, mean, np.where(scale > 1e-9, scale, 1.0)


def _fit_label(Z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """(coef, intercept) on the rows where ``y`` is known; a constant model when one class only."""
    known = ~np.isnan(y)
    Z, y = Z[known], y[known] > 0.5
    if y.all() or not y.any():
        prevalence = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
        return np.zeros(Z.shape[1]), float(np.log(prevalence / (1 - prevalence)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(Z, y)
    return model.coef_[0].astype(float), float(model.intercept_[0])


def choose_c(Z: np.ndarray, Y: np.ndarray, folds: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Per label, the C of best leave-one-fold-out AUROC over folds 1–8, and the out-of-fold logits
    of that C ([n, L]; NaN for cases outside folds 1–8)."""
    held_out_folds = [f for f in np.unique(folds) if f > 0]
    chosen, oof = [], np.full(Y.shape, np.nan)
    for j in range(Y.shape[1]):
        best = (-1.0, C_GRID[0], None)
        for C in C_GRID:
            z = np.full(len(Y), np.nan)
            for fold in held_out_folds:
                test = folds == fold
                coef, intercept = _fit_label(Z[~test], Y[~test, j], C)
                z[test] = Z[test] @ coef + intercept
            scored = ~np.isnan(z)
            score = auroc(Y[scored, j], z[scored], warn=False)
            if np.isfinite(score) and score > best[0]:
                best = (score, C, z)
        chosen.append(best[1])
        if best[2] is not None:
            oof[:, j] = best[2]
    return chosen, oof


def _macro_statistic(Y: np.ndarray, P: np.ndarray, codes: list[str]):
    def statistic(index: np.ndarray) -> dict[str, float]:
        values = {code: auroc(Y[index, j], P[index, j], warn=False) for j, code in enumerate(codes)}
        finite = [v for v in values.values() if np.isfinite(v)]
        return {"macro": float(np.mean(finite)) if finite else float("nan"), **values}

    return statistic


def auroc_with_intervals(Y: np.ndarray, P: np.ndarray, codes: list[str], seed: int = 0) -> dict[str, Any]:
    """Per-label and macro AUROC with 95% stratified bootstrap intervals (rows with unknown labels of a
    label are left out of that label)."""
    keep = ~np.isnan(Y).all(axis=1)
    Y, P = Y[keep], P[keep]
    result = bootstrap(_macro_statistic(Y, P, codes), len(Y), strata=strata_from_labels(Y), n_boot=N_BOOT, seed=seed)
    rounded = {
        name: {k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v) for k, v in entry.items()}
        for name, entry in result.items()
    }
    return {
        "macro": rounded.pop("macro"),
        "per_label": rounded,
        "n": len(Y),
        "positives": {code: int(np.nansum(Y[:, j] > 0.5)) for j, code in enumerate(codes)},
    }


def fit_fusion(
    F_train: np.ndarray,
    Y_train: np.ndarray,
    folds_train: np.ndarray,
    F_val: np.ndarray,
    Y_val: np.ndarray,
    P_val_net: np.ndarray,
    features: list[str],
    codes: list[str],
    threshold_method: str,
) -> tuple[FusionHead, dict[str, float], dict[str, Any]]:
    """The fitted head, its thresholds on fold 9 and the card metrics."""
    fill, mean, scale = _standardisation(F_train)
    head = FusionHead(
        labels=codes,
        features=features,
        fill=fill.tolist(),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=[[0.0] * len(features)] * len(codes),
        intercept=[0.0] * len(codes),
        network_weight=[1.0] * len(codes),
    )
    Z_train = head.standardise(F_train)
    Cs, oof_logits = choose_c(Z_train, Y_train, folds_train)
    fitted = [_fit_label(Z_train, Y_train[:, j], C) for j, C in enumerate(Cs)]
    head = head.model_copy(update={"coef": [c.tolist() for c, _ in fitted], "intercept": [b for _, b in fitted]})
    z_meas, z_net = head.measurement_logits(F_val), logit(P_val_net)
    weights = []
    for j in range(len(codes)):
        scores = [auroc(Y_val[:, j], w * z_net[:, j] + (1 - w) * z_meas[:, j], warn=False) for w in WEIGHT_GRID]
        finite = [(s, -abs(w - 0.5), w) for s, w in zip(scores, WEIGHT_GRID) if np.isfinite(s)]
        weights.append(max(finite)[2] if finite else 0.5)  # ties: the more even blend
    head = head.model_copy(update={"network_weight": weights})
    P_val = head.combine(P_val_net, F_val)
    thresholds = choose_thresholds(Y_val, P_val, threshold_method, codes)
    oof_rows = ~np.isnan(oof_logits).all(axis=1)
    metrics = {
        "val_auroc_ci": auroc_with_intervals(Y_val, P_val, codes),
        "val_auroc_network_ci": auroc_with_intervals(Y_val, P_val_net, codes),
        "val_auroc_measurements_ci": auroc_with_intervals(Y_val, 1 / (1 + np.exp(-z_meas)), codes),
        "cv_auroc_measurements_ci": auroc_with_intervals(
            Y_train[oof_rows], 1 / (1 + np.exp(-oof_logits[oof_rows])), codes
        ),
        "val_operating_points": operating_points(Y_val, P_val, thresholds, codes),
        "fusion": {"C": dict(zip(codes, Cs)), "network_weight": dict(zip(codes, weights)), "n_features": len(features)},
        "fold_9_caveat": FOLD_9_CAVEAT,
    }
    return head, thresholds, metrics

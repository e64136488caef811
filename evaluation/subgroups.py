"""Subgroup analysis: the headline metrics per site, sex, age band and device manufacturer, with a
warning wherever a subgroup is too small to say much (configurable minimum cases / positives)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from datasets.vocabulary.age import age_band
from evaluation.metrics import auroc, threshold_metrics

DEFAULT_BY = ("site", "sex", "age_band", "manufacturer")


@dataclass(frozen=True)
class SmallSampleRule:
    min_n: int = 30
    min_pos: int = 5


def with_age_band(meta: pd.DataFrame) -> pd.DataFrame:
    meta = meta.copy()
    ages = meta["age"] if "age" in meta.columns else [None] * len(meta)
    computed = [age_band(age).value for age in ages]
    if "age_band" in meta.columns:  # given bands (e.g. de-identified exports) win where present
        meta["age_band"] = [b if isinstance(b, str) and b else c for b, c in zip(meta["age_band"], computed)]
    else:
        meta["age_band"] = computed
    return meta


def subgroup_table(
    Y: np.ndarray,
    P: np.ndarray,
    labels: Sequence[str],
    thresholds: dict[str, float],
    meta: pd.DataFrame,
    by: Sequence[str] = DEFAULT_BY,
    rule: SmallSampleRule = SmallSampleRule(),
) -> pd.DataFrame:
    """One row per (attribute, group, label): n, n_pos, AUROC, sensitivity, specificity, PPV, and a
    ``warning`` text where n < rule.min_n or positives < rule.min_pos (numbers then are unreliable)."""
    meta = with_age_band(meta.reset_index(drop=True))
    rows = []
    for attribute in by:
        if attribute not in meta.columns:
            continue
        values = meta[attribute].fillna("unknown").astype(str).to_numpy()
        for group in sorted(set(values)):
            mask = values == group
            for j, code in enumerate(labels):
                y, p = Y[mask, j], P[mask, j]
                known = ~np.isnan(y)
                n, n_pos = int(known.sum()), int((y[known] > 0.5).sum())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    a = auroc(y, p, warn=False)
                    t = threshold_metrics(y, p, thresholds[code])
                problems = []
                if n < rule.min_n:
                    problems.append(f"n={n} < {rule.min_n}")
                if n_pos < rule.min_pos:
                    problems.append(f"positives={n_pos} < {rule.min_pos}")
                rows.append(
                    {
                        "attribute": attribute,
                        "group": group,
                        "label": code,
                        "n": n,
                        "n_pos": n_pos,
                        "auroc": a,
                        "sensitivity": t["sensitivity"],
                        "specificity": t["specificity"],
                        "ppv": t["ppv"],
                        "warning": "too small: " + ", ".join(problems) if problems else "",
                    }
                )
    return pd.DataFrame(
        rows,
        columns=["attribute", "group", "label", "n", "n_pos", "auroc", "sensitivity", "specificity", "ppv", "warning"],
    )

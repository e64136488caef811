from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from datasets.vocabulary.age import age_band
from evaluation.bootstrap import bootstrap, strata_from_labels, stratified_resample
from evaluation.calibration import brier_score, expected_calibration_error, reliability_bins
from evaluation.metrics import auroc
from evaluation.subgroups import SmallSampleRule, subgroup_table
from evaluation.thresholds import site_operating_points, threshold_for_sensitivity


def test_stratified_resample_keeps_class_counts():
    y = np.array([1] * 7 + [0] * 23)
    rng = np.random.default_rng(0)
    for _ in range(20):
        index = stratified_resample(y, rng)
        assert len(index) == 30 and y[index].sum() == 7


def test_strata_pool_rare_patterns():
    Y = np.array([[1, 0]] * 6 + [[0, 0]] * 6 + [[1, 1]] * 2 + [[np.nan, 1]])
    strata = strata_from_labels(Y)
    assert len(set(strata[:6])) == 1 and len(set(strata[6:12])) == 1
    assert set(strata[12:]) == {-1}


def test_bootstrap_returns_interval_around_point():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    out = bootstrap(lambda i: {"mean": float(x[i].mean())}, 200, n_boot=300, seed=1)
    entry = out["mean"]
    assert entry["ci_low"] < entry["value"] < entry["ci_high"]
    assert entry["n_boot"] == 300
    assert entry["ci_high"] - entry["ci_low"] == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)


def _auroc_of(y: np.ndarray, s: np.ndarray, index: np.ndarray) -> dict[str, float]:
    """The bootstrap statistic of one simulated data set (bound with partial: no loop variable captured)."""
    return {"auroc": auroc(y[index], s[index], warn=False)}


@pytest.mark.slow
def test_bootstrap_auroc_coverage_near_nominal():
    """Percentile stratified bootstrap for AUROC: 95% intervals cover the true AUROC in ~95% of
    simulated data sets (binormal scores, true AUROC = Φ(d/√2))."""
    d, n_pos, n_neg = 1.0, 60, 90
    truth = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(2024)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    hits, reps = 0, 200
    for rep in range(reps):
        s = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
        ci = bootstrap(partial(_auroc_of, y, s), len(y), y, n_boot=200, seed=rep)["auroc"]
        hits += ci["ci_low"] <= truth <= ci["ci_high"]
    coverage = hits / reps
    assert 0.88 <= coverage <= 0.99, coverage  # its speed: `preread bench timings`


def test_ece_and_reliability():
    rng = np.random.default_rng(5)
    p = rng.random(20000)
    y = rng.random(20000) < p  # perfectly calibrated
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, p * 0.5) > 0.2  # under-confident scores
    bins = reliability_bins([0, 1, 1, np.nan], [0.0, 1.0, 0.95, 0.5], n_bins=10)
    assert bins["count"].sum() == 3 and bins["count"][0] == 1 and bins["count"][-1] == 2
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0
    assert brier_score([1, 0], [1.0, 0.0]) == 0.0
    q = reliability_bins(y, p, n_bins=5, strategy="quantile")
    assert np.allclose(q["count"], 4000, atol=2)


def test_subgroups_flag_small_groups():
    rng = np.random.default_rng(0)
    n = 100
    Y = (rng.random((n, 2)) < 0.3).astype(float)
    P = rng.random((n, 2))
    meta = pd.DataFrame(
        {
            "site": ["big"] * 90 + ["tiny"] * 10,
            "sex": rng.choice(["male", "female"], n),
            "age": rng.integers(10, 95, n),
            "manufacturer": "GE",
        }
    )
    table = subgroup_table(Y, P, ["A", "B"], {"A": 0.5, "B": 0.5}, meta, rule=SmallSampleRule(min_n=30, min_pos=5))
    tiny = table[(table["attribute"] == "site") & (table["group"] == "tiny")]
    assert (tiny["warning"].str.contains("n=10 < 30")).all()
    big = table[(table["attribute"] == "site") & (table["group"] == "big") & (table["label"] == "A")].iloc[0]
    assert big["n"] == 90 and big["warning"] == ""
    assert set(table["attribute"]) == {"site", "sex", "age_band", "manufacturer"}
    assert age_band(17) == "0-17" and age_band(65) == "65-79" and age_band(None) == "unknown"


def test_threshold_for_sensitivity_and_site_points():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.7, 0.2, 0.1, 0.05, 0.5, 0.35])
    assert threshold_for_sensitivity(y, p, 0.5) == 0.8
    assert threshold_for_sensitivity(y, p, 0.75) == 0.4
    assert threshold_for_sensitivity(y, p, 1.0) == 0.3
    assert threshold_for_sensitivity(np.zeros(3), p[:3], 0.9) is None
    Y = np.r_[y, y][:, None].astype(float)
    P = np.r_[p, p * 0.5][:, None]
    points = site_operating_points(Y, P, ["A"], ["s1"] * 10 + ["s2"] * 10, 0.75, min_pos=2)
    assert points["s1"]["A"]["threshold"] == 0.4 and points["s2"]["A"]["threshold"] == 0.2
    assert points["s1"]["A"]["sensitivity"] >= 0.75
    few = site_operating_points(Y, P, ["A"], ["s1"] * 20, 0.75, min_pos=20)
    assert few["s1"]["A"]["threshold"] is None and "positives" in few["s1"]["A"]["warning"]

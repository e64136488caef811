from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from evaluation.metrics import (
    CHALLENGE_LABELS,
    CHALLENGE_WEIGHTS,
    MetricWarning,
    auprc,
    auroc,
    challenge_score,
    modified_confusion_matrix,
    multilabel_metrics,
    ptbxl_macro_auroc,
    threshold_metrics,
)


@pytest.mark.parametrize("seed", range(5))
def test_rank_metrics_equal_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 300))
    y = rng.random(n) < rng.uniform(0.1, 0.6)
    y[:2] = [True, False]
    s = rng.random(n)
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_rank_metrics_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    n = 200
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    s = rng.integers(0, 5, n) / 4.0  # heavy ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    s_const = np.full(n, 0.3)
    assert auroc(y, s_const) == pytest.approx(0.5)
    assert auprc(y, s_const) == pytest.approx(average_precision_score(y, s_const))


def test_perfect_and_inverted():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auprc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0


@pytest.mark.parametrize("y", [np.zeros(10), np.ones(10)])
def test_one_class_absent_is_nan_with_warning(y):
    s = np.linspace(0, 1, 10)
    with pytest.warns(MetricWarning, match="only one class"):
        assert np.isnan(auroc(y, s, name="AF"))
    with pytest.warns(MetricWarning):
        assert np.isnan(auprc(y, s))


def test_threshold_metrics_equal_sklearn():
    rng = np.random.default_rng(7)
    y = rng.random(500) < 0.25
    s = rng.random(500)
    for t in (0.2, 0.5, 0.77):
        predicted = s >= t
        m = threshold_metrics(y, s, t)
        assert m["sensitivity"] == pytest.approx(recall_score(y, predicted))
        assert m["specificity"] == pytest.approx(recall_score(~y, ~predicted))
        assert m["ppv"] == pytest.approx(precision_score(y, predicted))
        assert m["npv"] == pytest.approx(precision_score(~y, ~predicted))
        assert m["f1"] == pytest.approx(f1_score(y, predicted))
    # score exactly at the threshold is positive
    assert threshold_metrics([1, 0], [0.5, 0.4999], 0.5)["sensitivity"] == 1.0
    # undefined denominators → NaN, not 0
    assert np.isnan(threshold_metrics([0, 0], [0.1, 0.2], 0.5)["sensitivity"])


def test_multilabel_macro_micro_and_missing_labels():
    rng = np.random.default_rng(1)
    Y = (rng.random((120, 3)) < 0.3).astype(float)
    P = np.clip(0.4 * Y + 0.6 * rng.random((120, 3)), 0, 1)
    Y[:10, 2] = np.nan  # unknown
    labels = ["A", "B", "C"]
    out = multilabel_metrics(Y, P, labels, {"A": 0.5, "B": 0.4, "C": 0.6})
    keep = ~np.isnan(Y[:, 2])
    assert out["per_label"]["C"]["auroc"] == pytest.approx(roc_auc_score(Y[keep, 2], P[keep, 2]))
    assert out["per_label"]["C"]["n"] == 110
    assert out["macro"]["auroc"] == pytest.approx(np.mean([out["per_label"][c]["auroc"] for c in labels]))
    flat = ~np.isnan(Y.ravel())
    assert out["micro"]["auroc"] == pytest.approx(roc_auc_score(Y.ravel()[flat], P.ravel()[flat]))
    thr = np.array([0.5, 0.4, 0.6])
    pred = (P >= thr).ravel()[flat]
    assert out["micro"]["f1"] == pytest.approx(f1_score(Y.ravel()[flat], pred))


def test_macro_skips_undefined_label_with_warning():
    Y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    P = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    with pytest.warns(MetricWarning):
        out = multilabel_metrics(Y, P, ["A", "B"], [0.5, 0.5])
    assert out["macro"]["auroc"] == 1.0
    assert np.isnan(out["per_label"]["B"]["auroc"])
    with pytest.warns(MetricWarning):
        assert ptbxl_macro_auroc(Y, P, ["A", "B"]) == 1.0


def _official_confusion(labels, outputs):
    """The Challenge's loop, written out as in its evaluation code, for comparison."""
    n, k = labels.shape
    A = np.zeros((k, k))
    for i in range(n):
        normalization = float(max(np.sum(np.any((labels[i, :], outputs[i, :]), axis=0)), 1))
        for j in range(k):
            if labels[i, j]:
                for m in range(k):
                    if outputs[i, m]:
                        A[j, m] += 1.0 / normalization
    return A


def test_challenge_weights_symmetric_unit_diagonal():
    assert np.allclose(CHALLENGE_WEIGHTS, CHALLENGE_WEIGHTS.T)
    assert np.all(np.diag(CHALLENGE_WEIGHTS) == 1.0)
    assert CHALLENGE_WEIGHTS.shape == (len(CHALLENGE_LABELS), len(CHALLENGE_LABELS))


def test_challenge_score_formula():
    rng = np.random.default_rng(3)
    Y = (rng.random((60, 7)) < 0.25).astype(float)
    out = (rng.random((60, 7)) < 0.3).astype(float)
    assert np.allclose(modified_confusion_matrix(Y, out), _official_confusion(Y > 0, out > 0))
    assert challenge_score(Y, Y) == pytest.approx(1.0)
    inactive = np.zeros_like(Y)
    inactive[:, 0] = 1
    assert challenge_score(Y, inactive) == pytest.approx(0.0)
    W = CHALLENGE_WEIGHTS
    observed = np.sum(W * _official_confusion(Y > 0, out > 0))
    correct = np.sum(W * _official_confusion(Y > 0, Y > 0))
    base = np.sum(W * _official_confusion(Y > 0, inactive > 0))
    assert challenge_score(Y, out) == pytest.approx((observed - base) / (correct - base))
    # a label subset in another order uses the matching weights
    sub = ["AF", "NORM"]
    idx = [1, 0]
    assert challenge_score(Y[:, idx], out[:, idx], sub) == pytest.approx(
        challenge_score(Y[:, idx], out[:, idx], sub, weights=W[np.ix_(idx, idx)])
    )

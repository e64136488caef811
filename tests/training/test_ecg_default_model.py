"""The default ECG model's data (real PTB-XL folds + CinC, superclass labels) and its fusion with the
measurement suite, on the real records. The network is trained by `make run`'s first start; here a
stand-in network probability isolates what the measurements learn."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from datasets.vocabulary.ecg import SUPERCLASS_CODES
from models.ecg.fusion import FusionHead, feature_names, feature_vector
from training.config import load_train_config
from training.ecg_default import load_default_data
from training.ecg_fusion import fit_fusion

CONFIG = "configs/train/ecg-default.yaml"


@pytest.fixture(scope="module")
def data():
    repo = Path(__file__).resolve().parents[2]
    config = load_train_config(repo / CONFIG)
    # Reading and measuring the 464 records takes a minute; the cache is keyed by the record ids and
    # the measurement method, so a stale one cannot be reused by mistake.
    config.data.cache_dir = Path(tempfile.gettempdir()) / "preread-test-cache" / "ecg-default"
    return load_default_data(config)


def test_protocol_and_labels(data):
    assert data.labels == list(SUPERCLASS_CODES) == ["NORM", "MI", "STTC", "CD", "HYP"]
    train, val = set(data.split_ids["train"]), set(data.split_ids["val"])
    assert not train & val and len(val) == len(data.X_val) == len(data.F_val)
    assert data.counts["ptbxl_val"] == len(val) > 60 and data.counts["cinc_train"] == 30
    assert set(np.unique(data.folds_train)) == {0, *range(1, 9)}  # 0: the CinC samples
    # every superclass has real positives and negatives in training and in fold 9
    for j in range(5):
        assert (data.Y_train[:, j] == 1).sum() >= 25 and (data.Y_val[:, j] == 1).sum() >= 8
        assert (data.Y_val[:, j] == 0).sum() >= 30
    # CinC: NORM unknown unless sinus rhythm is the only diagnosis; the others known
    cinc = data.folds_train == 0
    assert np.isnan(data.Y_train[cinc, 0]).any() and not np.isnan(data.Y_train[cinc, 1:]).any()
    assert (data.Y_train[cinc, 0] == 1).sum() == 11  # the 11 "Dx: 426783006" records
    assert data.F_train.shape[1] == len(data.features) > 50


def test_features_follow_the_measurement_suite(data):
    assert {"qrs_duration_ms", "qtc_bazett_ms", "sokolow_lyon_mv", "qrs_axis_deg_cos", "V2.st_j_mv"} <= set(
        data.features
    )
    measured = {"qrs_axis_deg": 90.0, "heart_rate_bpm": None}
    vector = feature_vector(measured, ["qrs_axis_deg_cos", "qrs_axis_deg_sin", "heart_rate_bpm", "missing"])
    assert vector[0] == pytest.approx(0.0, abs=1e-12) and vector[1] == pytest.approx(1.0)
    assert np.isnan(vector[2]) and np.isnan(vector[3])
    assert feature_names(measured) == ["heart_rate_bpm", "qrs_axis_deg_cos", "qrs_axis_deg_sin"]


def test_measurements_learn_the_superclasses(data):
    """With an uninformative network (p = 0.5), what the read gets comes from the measurements: on
    folds never fitted on (leave-one-fold-out) and on fold 9, every superclass is well above chance,
    and normal ECGs score higher for NORM than infarcts do."""
    stand_in = np.full(data.Y_val.shape, 0.5)
    head, thresholds, metrics = fit_fusion(
        data.F_train,
        data.Y_train,
        data.folds_train,
        data.F_val,
        data.Y_val,
        stand_in,
        data.features,
        data.labels,
        "youden",
    )
    assert head.network_weight and set(thresholds) == set(SUPERCLASS_CODES)
    cv, val = metrics["cv_auroc_measurements_ci"], metrics["val_auroc_measurements_ci"]
    assert cv["macro"]["value"] > 0.8 and val["macro"]["value"] > 0.8
    for code in SUPERCLASS_CODES:
        assert cv["per_label"][code]["value"] > 0.7, code
        low, high = val["per_label"][code]["ci_low"], val["per_label"][code]["ci_high"]
        assert low <= val["per_label"][code]["value"] <= high
    P = head.combine(stand_in, data.F_val)
    norm, mi = data.Y_val[:, 0] == 1, data.Y_val[:, 1] == 1
    assert P[norm, 0].mean() > P[mi, 0].mean() + 0.2
    # the head survives the card's JSON and gives the same numbers
    again = FusionHead.model_validate(json.loads(json.dumps(head.model_dump())))
    np.testing.assert_allclose(again.combine(stand_in, data.F_val), P)


def test_combine_weights():
    head = FusionHead(
        labels=["A"],
        features=["x"],
        fill=[0.0],
        mean=[0.0],
        scale=[1.0],
        coef=[[2.0]],
        intercept=[0.0],
        network_weight=[1.0],
    )
    network = np.array([[0.9]])
    assert head.combine(network, np.array([[-3.0]]))[0, 0] == pytest.approx(0.9)
    measured = head.model_copy(update={"network_weight": [0.0]})
    assert measured.combine(network, np.array([[1.0]]))[0, 0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert measured.combine(network, np.array([[np.nan]]))[0, 0] == pytest.approx(0.5)  # filled with the median
    with pytest.raises(ValueError):
        FusionHead(
            labels=["A"],
            features=["x"],
            fill=[],
            mean=[0.0],
            scale=[1.0],
            coef=[[1.0]],
            intercept=[0.0],
            network_weight=[1.0],
        )

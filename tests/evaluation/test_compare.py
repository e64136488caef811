from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.compare import (
    GATE_FILENAME,
    GateConfig,
    compare_models,
    delong_paired,
    gate_decision,
    load_gate_config,
    record_gate,
)

LABELS = ["NORM", "AF", "STE"]


def _scores(rng, Y, separation):
    return 1 / (1 + np.exp(-(separation * (2 * Y - 1) + rng.normal(size=Y.shape))))


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(11)
    Y = (rng.random((600, 3)) < 0.3).astype(float)
    champion = _scores(rng, Y, 1.0)
    return rng, Y, champion


def _run(Y, champion, challenger, config=GateConfig(n_boot=200)):
    thresholds = {c: 0.5 for c in LABELS}
    comparison = compare_models(
        Y,
        champion,
        challenger,
        LABELS,
        thresholds,
        thresholds,
        n_boot=config.n_boot,
        alpha=1 - config.confidence,
        seed=0,
    )
    return comparison, gate_decision(
        comparison,
        GateConfig(**{**config.__dict__, "critical_findings": {"ecg": ["STE"]}}),
        task="ecg",
        champion="ecg/1",
        challenger="ecg/2",
    )


def test_gate_blocks_worse_challenger(synthetic):
    rng, Y, champion = synthetic
    worse = _scores(rng, Y, 0.5)
    comparison, decision = _run(Y, champion, worse)
    assert not decision.passed
    assert any(r.startswith("NORM:") for r in decision.reasons)
    assert comparison["per_label"]["AF"]["auroc_delta"]["ci_high"] < 0


def test_gate_passes_better_challenger(synthetic):
    rng, Y, champion = synthetic
    better = _scores(rng, Y, 1.6)
    comparison, decision = _run(Y, champion, better)
    assert decision.passed, decision.reasons
    for code in LABELS:
        assert comparison["per_label"][code]["auroc_delta"]["ci_low"] > -0.01
        assert comparison["per_label"][code]["auroc_challenger"]["value"] == pytest.approx(
            roc_auc_score(Y[:, LABELS.index(code)], better[:, LABELS.index(code)])
        )


def test_gate_blocks_lower_critical_sensitivity(synthetic):
    _, Y, champion = synthetic
    # same ranking (AUROC identical) but a threshold that misses STE cases
    shifted = champion.copy()
    shifted[:, 2] = champion[:, 2] * 0.5
    thresholds = {c: 0.5 for c in LABELS}
    comparison = compare_models(Y, champion, shifted, LABELS, thresholds, thresholds, n_boot=100)
    decision = gate_decision(comparison, GateConfig(n_boot=100, critical_findings={"ecg": ["STE"]}), task="ecg")
    assert not decision.passed
    assert decision.reasons == [r for r in decision.reasons if r.startswith("STE:")]
    assert any(c["check"] == "critical_sensitivity" and not c["passed"] for c in decision.checks)


def test_identical_models_pass(synthetic):
    _, Y, champion = synthetic
    comparison, decision = _run(Y, champion, champion.copy())
    assert decision.passed
    assert comparison["per_label"]["AF"]["auroc_delta"]["ci_low"] == 0.0


def test_delong_agrees_with_bootstrap(synthetic):
    rng, Y, champion = synthetic
    other = _scores(rng, Y, 0.7)
    result = delong_paired(Y[:, 0], champion[:, 0], other[:, 0])
    assert result["delta"] == pytest.approx(
        roc_auc_score(Y[:, 0], other[:, 0]) - roc_auc_score(Y[:, 0], champion[:, 0])
    )
    assert result["p_value"] < 0.05
    comparison = compare_models(
        Y, champion, other, LABELS, {c: 0.5 for c in LABELS}, {c: 0.5 for c in LABELS}, n_boot=300
    )
    boot = comparison["per_label"]["NORM"]["auroc_delta"]
    assert (boot["ci_high"] - boot["ci_low"]) / (2 * 1.96) == pytest.approx(result["se"], rel=0.35)


def test_gate_config_file_and_validation(tmp_path):
    config = load_gate_config()
    assert config.max_auroc_drop == 0.01 and config.confidence == 0.95 and config.n_boot >= 1000
    assert "STE" in config.critical_findings["ecg"]
    bad = tmp_path / "gate.yaml"
    bad.write_text("max_auroc_drop: 0.01\nunknown_key: 1\n")
    with pytest.raises(ValueError, match="unknown_key"):
        load_gate_config(bad)
    with pytest.raises(ValueError):
        GateConfig(rule="whatever")


def test_undefined_label_skipped_or_blocked():
    Y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]] * 10, dtype=float)
    P = np.random.default_rng(0).random(Y.shape)
    comparison = compare_models(Y, P, P, ["A", "B"], {"A": 0.5, "B": 0.5}, {"A": 0.5, "B": 0.5}, n_boot=50)
    assert gate_decision(comparison, GateConfig(n_boot=50)).passed
    assert not gate_decision(comparison, GateConfig(n_boot=50, undefined_labels="block")).passed


def test_record_gate_writes_evidence_beside_version(tiny_registry, synthetic):
    from models.registry import ModelRegistry

    _, Y, champion = synthetic
    registry = ModelRegistry(tiny_registry)
    challenger = registry.resolve("ecg@challenger")
    _, decision = _run(Y, champion, champion.copy())
    path = record_gate(challenger, decision)
    assert path == challenger.path / GATE_FILENAME
    data = json.loads(path.read_text())
    assert data["passed"] is True and data["checks"]
    card = registry.resolve("ecg@challenger").card
    assert card.metrics["gate"]["passed"] is True and card.metrics["gate"]["evidence"] == GATE_FILENAME

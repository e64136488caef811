"""Evaluate a registered model on a dataset, and the champion-vs-challenger gate: the library behind
`preread evaluate` and `preread models promote --gate` (``evaluation.cli`` parses their arguments).

:func:`evaluate_arrays` (numbers from labels + scores), :func:`predict` (a registered model's network
probabilities for preprocessed inputs), :func:`dataset_scores` (the scores its read makes: for an ECG
model with a fusion head, combined with each record's measurements), :func:`run_evaluate` (the command),
:func:`run_gate` (champion vs challenger on the same data, decision stored in the registry),
:func:`promote_with_gate`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.bootstrap import DEFAULT_N_BOOT, bootstrap, strata_from_labels
from evaluation.calibration import expected_calibration_error
from evaluation.compare import compare_models, gate_decision, load_gate_config, record_gate
from evaluation.datasets import EvalDataset, ecg_measurements, load_eval_dataset
from evaluation.metrics import (
    CHALLENGE_LABELS,
    MetricWarning,
    auprc,
    auroc,
    challenge_score,
    multilabel_metrics,
    threshold_metrics,
)
from evaluation.report import write_report
from evaluation.subgroups import SmallSampleRule, subgroup_table
from evaluation.thresholds import site_operating_points
from evaluation.thresholds import write_site_thresholds as store_site_thresholds
from evaluation.tracking import track_evaluation
from models.backends import load_backend
from models.ecg.served_scores import served_scores
from models.networks import build_network
from models.registry import open_registry

PREDICT_BATCH = 32
CHALLENGE_LABEL_MAPPING = (
    "NORM→426783006 NSR, AF→164889003, STACH→427084000, SBRAD→426177001, "
    "STE→164934002 TAb (proxy), WQRS→6374002 BBB, PREM→284470004|63593006 PAC"
)


def _mean_of_defined(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN; NaN when none is."""
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


def headline_statistic(Y, P, labels: Sequence[str], thresholds: dict[str, float]):
    """The function the bootstrap resamples: every headline number from an index array."""
    labels = list(labels)
    thr = np.array([thresholds[c] for c in labels])
    with_challenge = set(labels) <= set(CHALLENGE_LABELS)

    def statistic(index: np.ndarray) -> dict[str, float]:
        y_all, p_all = Y[index], P[index]
        out: dict[str, float] = {}
        aurocs, auprcs, f1s, eces = [], [], [], []
        for j, code in enumerate(labels):
            y, p = y_all[:, j], p_all[:, j]
            a, ap = auroc(y, p, warn=False), auprc(y, p, warn=False)
            t = threshold_metrics(y, p, thr[j])
            e = expected_calibration_error(y, p)
            out[f"{code}/auroc"], out[f"{code}/auprc"], out[f"{code}/ece"] = a, ap, e
            for key, value in t.items():
                out[f"{code}/{key}"] = value
            aurocs.append(a), auprcs.append(ap), f1s.append(t["f1"]), eces.append(e)
        out["macro_auroc"], out["macro_auprc"] = _mean_of_defined(aurocs), _mean_of_defined(auprcs)
        out["macro_f1"], out["macro_ece"] = _mean_of_defined(f1s), _mean_of_defined(eces)
        out["micro_auroc"] = auroc(y_all.ravel(), p_all.ravel(), warn=False)
        out["micro_auprc"] = auprc(y_all.ravel(), p_all.ravel(), warn=False)
        if with_challenge:
            known = ~np.isnan(y_all).any(axis=1)
            out["challenge_score"] = challenge_score(y_all[known], (p_all[known] >= thr).astype(float), labels)
        return out

    return statistic


def _metric_warnings(point: dict[str, Any], records: list, labels: Sequence[str], rule: SmallSampleRule) -> list[str]:
    """The metric warnings raised while computing ``point``, then every label too small to trust."""
    caught = sorted({str(r.message) for r in records if issubclass(r.category, MetricWarning)})
    for code in labels:
        entry = point["per_label"][code]
        if entry["n"] < rule.min_n or entry["n_pos"] < rule.min_pos:
            caught.append(
                f"{code}: {entry['n']} cases, {entry['n_pos']} positives "
                f"(minimum {rule.min_n} cases, {rule.min_pos} positives): its numbers are unreliable"
            )
    return caught


def evaluate_arrays(
    Y,
    P,
    labels: Sequence[str],
    thresholds: dict[str, float],
    meta=None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    rule=None,
    subgroup_by: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All numbers for reference labels ``Y`` and probabilities ``P`` ([n, L], NaN = unknown label)."""
    rule = rule or SmallSampleRule()
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    labels = list(labels)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", MetricWarning)
        point = multilabel_metrics(Y, P, labels, thresholds)
    headline = bootstrap(
        headline_statistic(Y, P, labels, thresholds), len(Y), strata_from_labels(Y), n_boot=n_boot, seed=seed
    )
    result: dict[str, Any] = {
        "labels": labels,
        "thresholds": {c: float(thresholds[c]) for c in labels},
        "n_cases": int(len(Y)),
        "n_boot": n_boot,
        "seed": seed,
        "per_label": point["per_label"],
        "macro": point["macro"],
        "micro": point["micro"],
        "headline": headline,
        "warnings": _metric_warnings(point, records, labels, rule),
    }
    if set(labels) <= set(CHALLENGE_LABELS):
        result["challenge_score"] = headline["challenge_score"]["value"]
        result["challenge_label_mapping"] = CHALLENGE_LABEL_MAPPING
    if meta is not None and len(meta):
        by = subgroup_by or ("site", "sex", "age_band", "manufacturer")
        result["subgroups"] = subgroup_table(Y, P, labels, thresholds, meta, by=by, rule=rule).to_dict(orient="records")
    return result


def predict(model, inputs, backend: str = "onnxruntime"):
    """The network's probabilities [n, L] of a registered model for preprocessed inputs (batched); what
    an ECG read shows may combine them with the measurements (``dataset_scores``)."""
    kind = backend
    if kind in ("onnxruntime", "onnx") and not (Path(model.path) / "model.onnx").is_file():
        kind = "torch"
    engine = load_backend(model.path, kind=kind, build_network=build_network)
    out = [engine.predict(inputs[i : i + PREDICT_BATCH]) for i in range(0, len(inputs), PREDICT_BATCH)]
    return np.concatenate(out).astype(np.float64)


def dataset_scores(model, dataset: EvalDataset, backend: str):
    """The scores stored with the dataset (a worklist export), else the model's scores as its read makes
    them: for an ECG model whose card has a fusion head, the network's probabilities combined with each
    record's measurements, and 0 for a record the read calls unreadable (models/ecg/served_scores.py);
    the card's thresholds were chosen on those numbers, not on the network's alone."""
    if dataset.scores is not None:
        return dataset.scores
    P = predict(model, dataset.inputs, backend)
    if model.card.task == "ecg" and model.card.fusion:
        P = served_scores(model.card, P, ecg_measurements(dataset))
        note = f"{model.ref}: scored as its read shows it, the network combined with each ECG's measurements"
        if note not in dataset.notes:
            dataset.notes.append(note)
    return P


def _site_thresholds(
    result: dict[str, Any],
    model,
    dataset: EvalDataset,
    P,
    registry,
    target_sensitivity: float,
    min_pos: int,
    write: bool,
) -> None:
    """Per-site thresholds reaching ``target_sensitivity`` into ``result`` (and, with ``write``, the card)."""
    points = site_operating_points(
        dataset.Y, P, dataset.labels, dataset.meta["site"], target_sensitivity, min_pos=min_pos
    )
    result["site_thresholds"] = points
    if write:
        store_site_thresholds(model, points, source=dataset.name, registry=registry)


def run_evaluate(
    model_ref: str,
    data_spec: str,
    report_dir: str | Path | None = None,
    registry_root: str | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    pdf: bool = False,
    backend: str = "onnxruntime",
    min_n: int = 30,
    min_pos: int = 5,
    site_target_sensitivity: float | None = None,
    write_site_thresholds: bool = False,
    champion_ref: str | None = None,
    gate_config: str | None = None,
    record: bool = False,
    track: bool = True,
) -> dict[str, Any]:
    """The `preread evaluate` command as a function. Returns the result dict (also DIR/metrics.json).
    With ``track`` and a model from the MLflow registry, the evaluation is also an MLflow run beside
    the model's training run (``result["tracking_run"]``; evaluation/tracking.py)."""
    # A folder or an MLflow URI; None: $PREREAD_REGISTRY, $MLFLOW_TRACKING_URI, var/mlflow
    registry = open_registry(registry_root)
    model = registry.resolve(model_ref)
    dataset = load_eval_dataset(data_spec, model.card)
    P = dataset_scores(model, dataset, backend)
    thresholds = dict(model.card.thresholds)
    rule = SmallSampleRule(min_n, min_pos)
    result = evaluate_arrays(
        dataset.Y, P, dataset.labels, thresholds, dataset.meta, n_boot=n_boot, seed=seed, rule=rule
    )
    result.update(model=model.ref, task=model.card.task, data=dataset.name, notes=dataset.notes)
    if data_spec.lower().startswith("ptbxl:"):
        # PTB-XL benchmark protocol: macro AUROC over the label set on the test fold
        result["ptbxl_macro_auroc"] = result["headline"]["macro_auroc"]
    if site_target_sensitivity is not None and "site" in dataset.meta:
        _site_thresholds(result, model, dataset, P, registry, site_target_sensitivity, min_pos, write_site_thresholds)
    if champion_ref is not None:
        result["gate"] = run_gate(
            registry,
            champion_ref,
            model,
            dataset,
            backend=backend,
            gate_config=gate_config,
            record=record,
            challenger_scores=P,
        )
    if report_dir is not None:
        subgroups = pd.DataFrame(result.get("subgroups", []))
        title = f"Evaluation of {model.ref}"
        write_report(report_dir, result, dataset.Y, P, dataset.labels, thresholds, subgroups, pdf=pdf, title=title)
    if track:
        params = {
            "data": data_spec,
            "n_boot": n_boot,
            "seed": seed,
            "backend": backend,
            "champion": champion_ref,
            "site_target_sensitivity": site_target_sensitivity,
        }
        result["tracking_run"] = track_evaluation(registry, model, result, report_dir=report_dir, params=params)
    return result


def run_gate(
    registry,
    champion_ref: str,
    challenger,
    dataset,
    backend: str = "onnxruntime",
    gate_config: str | None = None,
    record: bool = False,
    challenger_scores=None,
    n_boot: int | None = None,
) -> dict[str, Any]:
    """Champion vs challenger on the same cases; the gate's decision (dict), stored with the
    challenger's version when ``record``."""
    config = load_gate_config(gate_config, n_boot=n_boot)
    champion = registry.resolve(champion_ref)
    if list(champion.card.labels) != list(challenger.card.labels):
        raise ValueError(f"{champion.ref} and {challenger.ref} predict different label sets; cannot compare")
    P2 = challenger_scores if challenger_scores is not None else dataset_scores(challenger, dataset, backend)
    P1 = dataset_scores(champion, dataset, backend) if dataset.scores is None else None
    if P1 is None:
        raise ValueError("a worklist export holds the scores of one model only; compare on a labelled dataset")
    comparison = compare_models(
        dataset.Y,
        P1,
        P2,
        dataset.labels,
        champion.card.thresholds,
        challenger.card.thresholds,
        n_boot=config.n_boot,
        alpha=1 - config.confidence,
        seed=config.seed,
    )
    comparison["data"] = dataset.name
    decision = gate_decision(
        comparison, config, task=challenger.card.task, champion=champion.ref, challenger=challenger.ref
    )
    if record:
        record_gate(challenger, decision, registry=registry)
    return decision.to_dict()


def promote_with_gate(
    registry, name: str, version: int, alias: str, data_spec: str | None, gate_config: str | None = None
) -> bool:
    """`preread models promote NAME/VERSION --gate --data FORMAT:PATH`: compare the version with the
    current holder of ``alias`` on the data, store the decision with the version (gate.json + card
    metrics: beside the version's files, or as MLflow artifact + version tag),
    and move the alias only if the gate passes. With no current holder the version is promoted."""
    challenger = registry.resolve(f"{name}/{version}")
    current = registry.aliases(name).get(alias)
    if current is None or current == version:
        registry.set_alias(name, alias, version)
        print(f"[preread] {name}@{alias} → version {version} (no other {alias} to compare with)")
        return True
    if not data_spec:
        print("error: --gate needs --data FORMAT:PATH to compare on", file=sys.stderr)
        return False
    try:
        dataset = load_eval_dataset(data_spec, challenger.card)
        decision = run_gate(registry, f"{name}/{current}", challenger, dataset, gate_config=gate_config, record=True)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    for check in decision["checks"]:
        print(f"  {'ok ' if check['passed'] else 'FAIL'} {check['label']:10s} {check['check']:22s} {check['detail']}")
    if not decision["passed"]:
        print(f"[preread] gate BLOCKED {name}/{version} (vs {name}/{current}); {alias} unchanged", file=sys.stderr)
        return False
    registry.set_alias(name, alias, version)
    print(f"[preread] gate passed: {name}@{alias} → version {version} (was {current})")
    return True

"""`preread evaluate`: a registered model on a dataset → metrics with bootstrap intervals, calibration,
subgroups, optional per-site operating points and champion-vs-challenger gate, and an HTML report.

Library entry points: :func:`evaluate_arrays` (numbers from labels + scores), :func:`predict`
(a registered model's probabilities for preprocessed inputs), :func:`run_evaluate` (the command),
:func:`run_gate` (champion vs challenger on the same data, decision stored in the registry).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Heavy imports (numpy, pandas, scipy, matplotlib) are inside the functions: `preread --help` and the
# other subcommands must not pay for them.
DEFAULT_N_BOOT = 1000
PREDICT_BATCH = 32


def headline_statistic(Y, P, labels: Sequence[str], thresholds: dict[str, float]):
    """The function the bootstrap resamples: every headline number from an index array."""
    import numpy as np  # noqa: PLC0415

    from evaluation.calibration import expected_calibration_error  # noqa: PLC0415
    from evaluation.metrics import CHALLENGE_LABELS, auprc, auroc, challenge_score, threshold_metrics  # noqa: PLC0415

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
        mean = lambda v: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan")  # noqa: E731
        out["macro_auroc"], out["macro_auprc"] = mean(aurocs), mean(auprcs)
        out["macro_f1"], out["macro_ece"] = mean(f1s), mean(eces)
        out["micro_auroc"] = auroc(y_all.ravel(), p_all.ravel(), warn=False)
        out["micro_auprc"] = auprc(y_all.ravel(), p_all.ravel(), warn=False)
        if with_challenge:
            known = ~np.isnan(y_all).any(axis=1)
            out["challenge_score"] = challenge_score(y_all[known], (p_all[known] >= thr).astype(float), labels)
        return out

    return statistic


def SmallSampleRule(*args, **kwargs):  # noqa: N802 - lazy alias of evaluation.subgroups.SmallSampleRule
    from evaluation.subgroups import SmallSampleRule as rule  # noqa: PLC0415

    return rule(*args, **kwargs)


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
    import numpy as np  # noqa: PLC0415

    from evaluation.bootstrap import bootstrap, strata_from_labels  # noqa: PLC0415
    from evaluation.metrics import CHALLENGE_LABELS, MetricWarning, multilabel_metrics  # noqa: PLC0415
    from evaluation.subgroups import subgroup_table  # noqa: PLC0415

    rule = rule or SmallSampleRule()
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    labels = list(labels)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", MetricWarning)
        point = multilabel_metrics(Y, P, labels, thresholds)
    caught += sorted({str(r.message) for r in records if issubclass(r.category, MetricWarning)})
    for code in labels:
        entry = point["per_label"][code]
        if entry["n"] < rule.min_n or entry["n_pos"] < rule.min_pos:
            caught.append(
                f"{code}: {entry['n']} cases, {entry['n_pos']} positives "
                f"(minimum {rule.min_n} cases, {rule.min_pos} positives): its numbers are unreliable"
            )
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
        "warnings": caught,
    }
    if set(labels) <= set(CHALLENGE_LABELS):
        result["challenge_score"] = headline["challenge_score"]["value"]
        result["challenge_label_mapping"] = (
            "NORM→426783006 NSR, AF→164889003, STACH→427084000, SBRAD→426177001, "
            "STE→164934002 TAb (proxy), WQRS→6374002 BBB, PREM→284470004|63593006 PAC"
        )
    if meta is not None and len(meta):
        table = subgroup_table(
            Y, P, labels, thresholds, meta, by=subgroup_by or ("site", "sex", "age_band", "manufacturer"), rule=rule
        )
        result["subgroups"] = table.to_dict(orient="records")
    return result


def predict(model, inputs, backend: str = "onnxruntime"):
    """Probabilities [n, L] of a registered model for preprocessed inputs (batched)."""
    import numpy as np  # noqa: PLC0415

    from models.backends import load_backend  # noqa: PLC0415
    from models.networks import build_network  # noqa: PLC0415

    kind = backend
    if kind in ("onnxruntime", "onnx") and not (Path(model.path) / "model.onnx").is_file():
        kind = "torch"
    engine = load_backend(model.path, kind=kind, build_network=build_network)
    out = [engine.predict(inputs[i : i + PREDICT_BATCH]) for i in range(0, len(inputs), PREDICT_BATCH)]
    return np.concatenate(out).astype(np.float64)


def _dataset_scores(model, dataset, backend: str):
    if dataset.scores is not None:
        return dataset.scores
    return predict(model, dataset.inputs, backend)


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
    import pandas as pd  # noqa: PLC0415

    from evaluation.datasets import load_eval_dataset  # noqa: PLC0415
    from evaluation.subgroups import SmallSampleRule  # noqa: PLC0415
    from models.registry import open_registry  # noqa: PLC0415

    registry = open_registry(
        registry_root
    )  # a folder or an MLflow URI; None: $PREREAD_REGISTRY, $MLFLOW_TRACKING_URI, var/mlflow
    model = registry.resolve(model_ref)
    dataset = load_eval_dataset(data_spec, model.card)
    P = _dataset_scores(model, dataset, backend)
    thresholds = dict(model.card.thresholds)
    result = evaluate_arrays(
        dataset.Y,
        P,
        dataset.labels,
        thresholds,
        dataset.meta,
        n_boot=n_boot,
        seed=seed,
        rule=SmallSampleRule(min_n, min_pos),
    )
    result.update(model=model.ref, task=model.card.task, data=dataset.name, notes=dataset.notes)
    if data_spec.lower().startswith("ptbxl:"):
        # PTB-XL benchmark protocol: macro AUROC over the label set on the test fold
        result["ptbxl_macro_auroc"] = result["headline"]["macro_auroc"]
    if site_target_sensitivity is not None and "site" in dataset.meta:
        from evaluation.thresholds import site_operating_points  # noqa: PLC0415
        from evaluation.thresholds import write_site_thresholds as write_points  # noqa: PLC0415

        points = site_operating_points(
            dataset.Y, P, dataset.labels, dataset.meta["site"], site_target_sensitivity, min_pos=min_pos
        )
        result["site_thresholds"] = points
        if write_site_thresholds:
            write_points(model, points, source=dataset.name, registry=registry)
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
        from evaluation.report import write_report  # noqa: PLC0415

        subgroups = pd.DataFrame(result.get("subgroups", []))
        write_report(
            report_dir,
            result,
            dataset.Y,
            P,
            dataset.labels,
            thresholds,
            subgroups=subgroups,
            pdf=pdf,
            title=f"Evaluation of {model.ref}",
        )
    if track:
        from evaluation.tracking import track_evaluation  # noqa: PLC0415

        result["tracking_run"] = track_evaluation(
            registry,
            model,
            result,
            report_dir=report_dir,
            params={
                "data": data_spec,
                "n_boot": n_boot,
                "seed": seed,
                "backend": backend,
                "champion": champion_ref,
                "site_target_sensitivity": site_target_sensitivity,
            },
        )
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
    from evaluation.compare import compare_models, gate_decision, load_gate_config, record_gate  # noqa: PLC0415

    config = load_gate_config(gate_config, n_boot=n_boot)
    champion = registry.resolve(champion_ref)
    if list(champion.card.labels) != list(challenger.card.labels):
        raise ValueError(f"{champion.ref} and {challenger.ref} predict different label sets; cannot compare")
    P2 = challenger_scores if challenger_scores is not None else _dataset_scores(challenger, dataset, backend)
    P1 = _dataset_scores(champion, dataset, backend) if dataset.scores is None else None
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="NAME, NAME@ALIAS or NAME/VERSION")
    parser.add_argument(
        "--data",
        required=True,
        help="FORMAT:PATH, FORMAT one of cinc, ptbxl, nih, chexpert, "
        "medmnist, dicom, worklist (options: FORMAT:PATH?limit=50)",
    )
    parser.add_argument("--report", help="write DIR/index.html (+ PNG plots, metrics.json)")
    parser.add_argument("--pdf", action="store_true", help="also DIR/report.pdf")
    parser.add_argument(
        "--registry",
        help="registry: an MLflow URI (sqlite:///…, http(s)://…) or a folder (default: the "
        "serving config's; $PREREAD_REGISTRY, $MLFLOW_TRACKING_URI, var/mlflow)",
    )
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--min-n", type=int, default=30, help="subgroups smaller than this are flagged")
    parser.add_argument("--min-pos", type=int, default=5, help="subgroups with fewer positives are flagged")
    parser.add_argument(
        "--site-sensitivity",
        type=float,
        help="compute per-site thresholds reaching this sensitivity (use validation data)",
    )
    parser.add_argument(
        "--write-site-thresholds",
        action="store_true",
        help="store the per-site thresholds in the model's card (card.metrics.site_thresholds)",
    )
    parser.add_argument("--champion", help="compare against this model (e.g. ecg@champion) and apply the gate")
    parser.add_argument("--gate-config", help="gate YAML (default configs/gate.yaml)")
    parser.add_argument("--record-gate", action="store_true", help="store the gate decision with the model version")
    parser.add_argument(
        "--no-track",
        dest="track",
        action="store_false",
        help="do not log this evaluation as an MLflow run (it is, for models in the MLflow registry)",
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.registry import ModelNotFound, RegistryUnavailable  # noqa: PLC0415

    try:
        result = run_evaluate(
            args.model,
            args.data,
            report_dir=args.report,
            registry_root=args.registry,
            n_boot=args.n_boot,
            seed=args.seed,
            pdf=args.pdf,
            backend=args.backend,
            min_n=args.min_n,
            min_pos=args.min_pos,
            site_target_sensitivity=args.site_sensitivity,
            write_site_thresholds=args.write_site_thresholds,
            champion_ref=args.champion,
            gate_config=args.gate_config,
            record=args.record_gate,
            track=args.track,
        )
    except (ModelNotFound, RegistryUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result))
    if args.report:
        print(f"[preread] report: {Path(args.report) / 'index.html'}")
    if result.get("tracking_run"):
        print(f"[preread] tracked as MLflow run {result['tracking_run']} (experiment preread-{result['task']})")
    if result.get("gate") is not None:
        return 0 if result["gate"]["passed"] else 1
    return 0


def summary_text(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']} on {result['data']}: {result['n_cases']} cases, {result['n_boot']} bootstrap resamples"
    ]
    head = result["headline"]
    for key in ("macro_auroc", "micro_auroc", "macro_auprc", "macro_f1", "macro_ece", "challenge_score"):
        if key in head:
            e = head[key]
            lines.append(f"  {key:16s} {e['value']:.3f}  (95% CI {e['ci_low']:.3f}–{e['ci_high']:.3f})")
    lines.append(f"  {'label':8s} {'n':>5s} {'pos':>4s} {'AUROC':>7s} {'sens':>6s} {'spec':>6s}")
    for code in result["labels"]:
        e = result["per_label"][code]
        lines.append(
            f"  {code:8s} {e['n']:5d} {e['n_pos']:4d} {e['auroc']:7.3f} {e['sensitivity']:6.3f} {e['specificity']:6.3f}"
        )
    if result.get("gate"):
        lines.append(
            f"  gate: {'PASSED' if result['gate']['passed'] else 'BLOCKED'} {'; '.join(result['gate']['reasons'])}"
        )
    for warning in result.get("warnings", [])[:10]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preread evaluate")
    add_arguments(parser)
    return cmd_evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


def promote_with_gate(
    registry, name: str, version: int, alias: str, data_spec: str | None, gate_config: str | None = None
) -> bool:
    """`preread models promote NAME/VERSION --gate --data FORMAT:PATH`: compare the version with the
    current holder of ``alias`` on the data, store the decision with the version (gate.json + card
    metrics: beside the version's files, or as MLflow artifact + version tag),
    and move the alias only if the gate passes. With no current holder the version is promoted."""
    from evaluation.datasets import load_eval_dataset  # noqa: PLC0415

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

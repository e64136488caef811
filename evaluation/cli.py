"""`preread evaluate`: its arguments, the command and the summary it prints. The work is in
``evaluation.evaluate`` (metrics with bootstrap intervals, calibration, subgroups, optional per-site
operating points and champion-vs-challenger gate, and an HTML report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evaluation import DEFAULT_N_BOOT

# `preread --help` and the other subcommands build this parser: the evaluation library (NumPy,
# pandas, SciPy, matplotlib, the models) is loaded only when the command runs.


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
    """Run `preread evaluate`; exit status 2 on a bad model/data/registry, 1 if the gate blocks."""
    from evaluation.evaluate import run_evaluate  # noqa: PLC0415 - CLI subcommand: loaded when run
    from models.registry import ModelNotFound, RegistryUnavailable  # noqa: PLC0415 - CLI subcommand: loaded when run

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
    """The lines the command prints: headline numbers with intervals, per label, gate, notes, warnings."""
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
    lines += [f"  note: {note}" for note in result.get("notes", [])[:10]]
    for warning in result.get("warnings", [])[:10]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preread evaluate")
    add_arguments(parser)
    return cmd_evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

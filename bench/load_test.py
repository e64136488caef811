"""Load test: ten times a county's daily volume, compressed in time, against `preread serve`, then a
zero-loss check. `python -m bench.load_test [--minutes 10] [--scale 10] [--json FILE]`.

The county (what the figures assume; docs/benchmarks.md "Load test"): 60 sending sites (15 township
health centres, 45 village clinics) sending 400 12-lead ECGs and 200 chest radiographs a day, i.e. 600
studies. Ten times that, compressed into ``--minutes``, is 6,000 studies in 10 minutes: 10 per
second, 2 in 3 of them ECGs (WFDB zips over HTTP) and 1 in 3 chest X-rays (STOW-RS).

Steps: start `preread serve` on a temporary config (SQLite, local files, free ports, the 60 sites,
a registry with ECG and CXR models: ``--registry``, else tiny ones trained here with the project's
own training configs), run locust headless (bench/locustfile.py: one user per site at a constant
rate), wait until every acknowledged object has its AI read (or ``--drain-minutes``), then check in
the database: every 2xx object is stored (row + file) and has exactly one AI read (audit events);
report p50/p95/p99 of the acknowledgement latency per request type, throughput, and the time from
arrival to AI read. JSON → bench/results/load.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.service_process import (
    REPO,
    ServiceProcess,
    ensure_registry,
    site_list,
    site_tokens,
    write_config,
    zero_loss_report,
)

SITES = 60
ECG_PER_DAY, CXR_PER_DAY = 400, 200


def run_locust(
    base: str, tokens: Path, acks: Path, csv_prefix: Path, seconds: int, rate: float, ecg_share: float, data: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREREAD_LOAD_TOKENS": str(tokens),
        "PREREAD_LOAD_ACKS": str(acks),
        "PREREAD_LOAD_RATE": str(rate),
        "PREREAD_LOAD_ECG_SHARE": str(ecg_share),
        "PREREAD_LOAD_DATA": str(data),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(SITES),
            "-r",
            str(SITES),
            "-t",
            f"{seconds}s",
            "--host",
            base,
            "--csv",
            str(csv_prefix),
            "--only-summary",
            "--stop-timeout",
            "60",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        check=False,
    )


def locust_stats(csv_prefix: Path) -> list[dict[str, Any]]:
    rows = []
    with open(f"{csv_prefix}_stats.csv") as fh:
        for row in csv.DictReader(fh):
            rows.append(
                {
                    "name": row["Name"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "p50_ms": float(row["50%"]),
                    "p95_ms": float(row["95%"]),
                    "p99_ms": float(row["99%"]),
                    "max_ms": float(row["Max Response Time"]),
                    "per_s": round(float(row["Requests/s"]), 2),
                }
            )
    return rows


def _parser() -> argparse.ArgumentParser:
    """`python -m bench.load_test`'s arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=10.0, help="times the county's daily volume")
    parser.add_argument(
        "--registry", default=None, help="a registry location: an MLflow URI (sqlite:///…, http://…) or a folder"
    )
    parser.add_argument("--drain-minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "load.json")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the temporary state (database, objects, serve.log) after a clean run",
    )
    return parser


def _load_and_check(
    service: ServiceProcess, cfg: dict[str, Any], state: Path, seconds: int, rate: float, args: argparse.Namespace
) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """Locust against the ready service, then the zero-loss check of what it acknowledged:
    (elapsed seconds, the acknowledgements, the zero-loss report)."""
    acks_path = state / "acks.jsonl"
    started = time.time()
    run_locust(
        service.base,
        state / "tokens.json",
        acks_path,
        state / "locust",
        seconds,
        rate,
        ECG_PER_DAY / (ECG_PER_DAY + CXR_PER_DAY),
        args.data,
    )
    elapsed = time.time() - started
    acks = (
        [json.loads(line) for line in acks_path.read_text().splitlines() if line.strip()] if acks_path.exists() else []
    )
    result = zero_loss_report(
        cfg["database"]["url"],
        Path(cfg["storage"]["root"]),
        [a["study_uid"] for a in acks],
        args.drain_minutes * 60,
    )
    return elapsed, acks, result


def main(argv: list[str] | None = None) -> int:
    """Start the service, load it, check zero loss, print and write the report; 1 if anything was lost."""
    args = _parser().parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="preread-load-"))
    registry = args.registry or str(state / "registry")
    ensure_registry(registry)
    config, cfg = write_config(state, registry, site_list(SITES))
    seconds = int(args.minutes * 60)
    total = (ECG_PER_DAY + CXR_PER_DAY) * args.scale
    rate = total / seconds / SITES
    print(
        f"[load] {SITES} sites, {total:.0f} studies in {seconds} s = {total / seconds:.1f}/s "
        f"({rate:.3f}/s per site); state in {state}",
        flush=True,
    )
    (state / "tokens.json").write_text(json.dumps(site_tokens(cfg)))
    service = ServiceProcess(config, state / "serve.log").start()
    try:
        service.wait_ready()
        elapsed, acks, result = _load_and_check(service, cfg, state, seconds, rate, args)
    finally:
        service.stop()
    report = {
        "sites": SITES,
        "daily_ecg": ECG_PER_DAY,
        "daily_cxr": CXR_PER_DAY,
        "scale": args.scale,
        "seconds": seconds,
        "target_per_s": round(total / seconds, 2),
        "elapsed_s": round(elapsed, 1),
        "acknowledged": len(acks),
        "acknowledged_per_s": round(len(acks) / elapsed, 2),
        "requests": locust_stats(state / "locust"),
        **result,
        "cpu_count": os.cpu_count(),
        "zero_loss": result["missing"] == 0 and result["without_file"] == 0 and result["read_more_than_once"] == 0,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    _print(report)
    if report["zero_loss"] and not args.keep_state:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"[load] state, serve.log and locust's CSVs kept in {state}")
    return 0 if report["zero_loss"] else 1


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console  # noqa: PLC0415 - rich loads only when a bench prints
    from rich.table import Table  # noqa: PLC0415 - rich loads only when a bench prints

    table = Table(
        title=f"preread load test: {report['scale']:g}× a county's day in {report['seconds']} s "
        f"(target {report['target_per_s']}/s)"
    )
    for col in ("request", "count", "failures", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right" if col != "request" else "left")
    for row in report["requests"]:
        table.add_row(
            row["name"],
            str(row["requests"]),
            str(row["failures"]),
            f"{row['per_s']:.2f}",
            f"{row['p50_ms']:.0f}",
            f"{row['p95_ms']:.0f}",
            f"{row['p99_ms']:.0f}",
            f"{row['max_ms']:.0f}",
        )
    console = Console()
    console.print(table)
    t = report["time_to_read_s"]
    console.print(
        f"acknowledged {report['acknowledged']} objects ({report['acknowledged_studies']} studies); "
        f"missing {report['missing']}, without file {report['without_file']}, unread {report['unread']}, "
        f"ai_failed {report['ai_failed']}, read more than once {report['read_more_than_once']}; "
        f"arrival → AI read p50 {t['p50']} s, p95 {t['p95']} s, p99 {t['p99']} s; "
        f"zero loss: {report['zero_loss']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())

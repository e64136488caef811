"""The model-serving comparison both benches run, on the same exported network and the same tensors:

(a) in-process: ONNX Runtime on batches in this process — the ceiling;
(b) preread on Ray Serve: KServe v2 binary requests (one batch of tensors each) to the model
    application's own route, /v2/models/<model>/infer, with Ray's default proxy and with its
    HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1);
(c) Triton (the nvidia-pytriton tritonserver) serving the same ONNX with our ORT backend inside its
    Python backend, dynamic batching with the same settings.

(b) and (c) use the same client (httpx, a prebuilt binary v2 body; bench/v2_load.py), at several
concurrencies (requests in flight), then at half of (b)'s saturation rate with open-loop arrivals.
Achieved GFLOP/s against the machine's fp32 matmul peak measured in the same run (bench/measure.py).
The systems served are started by bench/servers.py; the table is bench/result_table.py.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import LoadPlan, cpu_seconds, machine_load, matmul_peak_gflops, percentile
from bench.result_table import markdown_table, print_table
from bench.servers import bench_config, ray_serve, token, triton_server
from bench.v2_load import load_levels
from models.backends import OnnxRuntimeBackend
from models.flops import onnx_flops
from serving.replica.triton.server import free_port
from serving.store.db import Database

__all__ = ["Comparison", "LoadPlan", "batched_reads_per_s", "percentile", "run_comparison", "token", "write_result"]


def batched_reads_per_s(reader, items: list, batch_size: int, repeats: int = 1) -> float:
    """Items per second through ``reader.read_batch`` in batches of ``batch_size`` (after a warm-up)."""
    reader.read_batch(items[:batch_size])
    started = time.perf_counter()
    done = 0
    for _ in range(repeats):
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            reader.read_batch(chunk)
            done += len(chunk)
    return done / (time.perf_counter() - started)


def best_threads(onnx_path: Path, tensors: np.ndarray, plan: LoadPlan, say: Callable[[str], None]) -> int:
    """The intra-op thread count at which the model alone goes fastest here now (on a shared
    machine fewer threads than cores can win); every path of the bench then uses it."""
    speeds = {}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        trial = LoadPlan(batch=plan.batch, concurrencies=[], requests=0, threads=threads)
        speeds[threads] = in_process(onnx_path, tensors, trial, seconds=3.0)["per_s"]
    say(f"threads → in-process {{{', '.join(f'{t}: {v:.0f}/s' for t, v in speeds.items())}}}")
    return max(speeds, key=speeds.get)


def in_process(onnx_path: Path, tensors: np.ndarray, plan: LoadPlan, seconds: float = 6.0) -> dict[str, Any]:
    """(a): items/s and per-batch time of OnnxRuntimeBackend on batches of ``plan.batch``."""
    backend = OnnxRuntimeBackend(onnx_path, intra_op_threads=plan.threads)
    batch = tensors[: plan.batch]
    backend.predict(batch)
    times = []
    cpu_before = cpu_seconds([os.getpid()])
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        backend.predict(batch)
        times.append(time.perf_counter() - started)
    total = sum(times)
    items = len(times) * len(batch)
    return {
        "per_s": items / total,
        "batch_ms_p50": percentile([t * 1000 for t in times], 50),
        "batch_ms_p95": percentile([t * 1000 for t in times], 95),
        "batches": len(times),
        "cpu_ms_per_item": (cpu_seconds([os.getpid()]) - cpu_before) * 1000 / items,
        "reference": backend.predict(batch),
    }


# --- the whole comparison -------------------------------------------------------------------------
@dataclass
class Comparison:
    """What a bench measures for one model; ``full_path`` adds the whole pre-read rows (it gets
    the bench config and the service's base URL while (b) runs)."""

    task: str
    unit: str  # "ECGs" / "images"
    base_cfg: Any
    tensors: np.ndarray
    plan: LoadPlan
    models: list[str]
    triton: bool = True
    haproxy_modes: tuple[bool, ...] = (False, True)
    dicom: bool = False
    dicom_updates: dict | None = None
    full_path: Callable[[Any, str, Callable[[str], None]], list[dict]] | None = None
    extra_rows: list[dict] = field(default_factory=list)


def _ceiling(around: list[dict]) -> dict[str, float]:
    """The in-process figures next to a served phase: the mean of the runs just before and after it
    (the machine is shared; its load drifts between phases)."""
    return {key: float(np.mean([a[key] for a in around])) for key in ("per_s", "batch_ms_p50", "cpu_ms_per_item")}


class _Phases:
    """A comparison in progress: the in-process runs measured so far (one before and after every
    served phase, the machine being shared), the served phases' outcomes and the load average."""

    def __init__(self, job: Comparison, onnx_path: Path, say: Callable[[str], None]):
        self.job, self.onnx_path, self.say = job, onnx_path, say
        self.in_process_runs: list[dict] = []
        self.outcomes: dict[str, dict] = {}
        self.loads = {"start": machine_load()}

    def measure_in_process(self) -> dict:
        """Row (a) once more."""
        plan = self.job.plan
        run = in_process(self.onnx_path, self.job.tensors, plan)
        run.pop("reference", None)
        self.in_process_runs.append(run)
        self.say(
            f"(a) in-process: {run['per_s']:.1f} {self.job.unit}/s, batch of {plan.batch} in "
            f"{run['batch_ms_p50']:.1f} ms, CPU {run['cpu_ms_per_item']:.2f} ms/item"
        )
        return run

    def served(self, name: str, outcome: dict) -> None:
        """Keep a served phase's outcome with its ceiling: the in-process runs just before and after it."""
        before = self.in_process_runs[-1]
        after = self.measure_in_process()
        outcome["ceiling"] = _ceiling([before, after])
        self.outcomes[name] = outcome
        self.loads[f"after_{name}"] = machine_load()


def _triton_phase(phases: _Phases, reference: np.ndarray) -> None:
    """(c): Triton on the same ONNX; where Triton cannot run here the phase records why."""
    job, say = phases.job, phases.say
    try:
        with triton_server(job.base_cfg, job.task, job.plan) as server:
            say(f"(c) Triton {server.http_url}")
            outcome = load_levels(
                f"http://{server.http_url}/v2/models/{job.task}/infer",
                job.tensors,
                job.plan,
                reference=reference,
                progress=say,
            )
        phases.served("triton", outcome)
    except Exception as exc:  # noqa: BLE001 - no Triton here: the row says why
        say(f"[yellow](c) Triton not run: {type(exc).__name__}: {exc}[/]")
        phases.outcomes["triton"] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def _serve_phases(phases: _Phases, reference: np.ndarray) -> list[dict]:
    """(b): preread on Ray Serve in each proxy mode (a Ray instance each); returns the whole
    pre-read rows of ``job.full_path``."""
    job, say = phases.job, phases.say
    full_rows: list[dict] = []
    for haproxy in job.haproxy_modes:
        mode = "haproxy" if haproxy else "ray-proxy"
        state = Path(tempfile.mkdtemp(prefix=f"preread-bench-{job.task}-"))
        cfg = bench_config(
            job.base_cfg, job.task, state, job.plan, job.models, free_port(), job.dicom, job.dicom_updates
        )
        Database(cfg.database.url).migrate()
        say(f"(b) preread on Ray Serve, {mode}")
        with ray_serve(cfg, haproxy) as base:
            outcome = load_levels(
                f"{base}/v2/models/{job.task}/infer",
                job.tensors,
                job.plan,
                headers={"Authorization": f"Bearer {token(cfg)}"},
                reference=reference,
                progress=say,
            )
            if job.full_path is not None:
                for row in job.full_path(cfg, base, say):
                    full_rows.append({**row, "proxy": mode})
        phases.served(mode, outcome)
    return full_rows


def _ratios(phases: dict[str, dict], best_mode: str, flops: float) -> dict[str, Any]:
    """The served paths against their ceilings: (b)/(a), (b)/(c), the half-load latency against the
    model's batch time, CPU efficiency and achieved GFLOP/s — each against the in-process runs
    measured just before and after its own phase."""
    best = phases[best_mode]
    triton = phases.get("triton")
    triton_ok = triton is not None and "error" not in triton
    serve_per_s = best["saturation"]["per_s"]
    triton_per_s = triton["saturation"]["per_s"] if triton_ok else None
    return {
        "serve_per_s": serve_per_s,
        "serve_proxy": best_mode,
        "triton_per_s": triton_per_s,
        "p50_ms": best["saturation"]["p50_ms"],
        "p95_ms": best["saturation"]["p95_ms"],
        "p99_ms": best["saturation"]["p99_ms"],
        "serve_over_in_process": serve_per_s / best["ceiling"]["per_s"],
        "serve_over_triton": (serve_per_s / best["ceiling"]["per_s"]) / (triton_per_s / triton["ceiling"]["per_s"])
        if triton_ok
        else None,
        "serve_over_triton_raw": serve_per_s / triton_per_s if triton_ok else None,
        "half_load_p95_over_model": best["half_load"]["p95_ms"] / best["ceiling"]["batch_ms_p50"],
        "cpu_efficiency": {
            mode: phases[mode]["ceiling"]["cpu_ms_per_item"] / phases[mode]["saturation"]["server_cpu_ms_per_item"]
            for mode in phases
            if "error" not in phases[mode]
        },
        "gflops": {
            "in_process": best["ceiling"]["per_s"] * flops / 1e9,
            "serve": serve_per_s * flops / 1e9,
            "triton": triton_per_s * flops / 1e9 if triton_ok else None,
        },
    }


def run_comparison(job: Comparison, console) -> dict[str, Any]:
    """Rows (a), (b) in each proxy mode and (c) for ``job``; prints the table and returns the result."""
    plan = job.plan
    say = console.print
    registered = job.base_cfg.registry.open().resolve(job.base_cfg.models[job.task].ref)
    flops = onnx_flops(registered.onnx_path, [1, *job.tensors.shape[1:]])
    phases = _Phases(job, registered.onnx_path, say)
    if plan.threads <= 0:
        plan.threads = best_threads(registered.onnx_path, job.tensors, plan, say)
    peak = matmul_peak_gflops(os.cpu_count() or 1)
    say(
        f"[bold]{job.task.upper()} serving benchmark[/] {registered.ref} ({registered.card.architecture}), "
        f"{flops / 1e6:.1f} MFLOP per {job.unit[:-1]}, batch {plan.batch}, {plan.threads} threads; "
        f"fp32 matmul peak {peak:.1f} GFLOP/s; load {phases.loads['start']}"
    )
    reference = in_process(registered.onnx_path, job.tensors, plan, seconds=0.5)["reference"]
    phases.measure_in_process()
    if job.triton:
        _triton_phase(phases, reference)
    full_rows = _serve_phases(phases, reference)

    outcomes = phases.outcomes
    serve_modes = [m for m in ("ray-proxy", "haproxy") if m in outcomes]
    best_mode = max(serve_modes, key=lambda m: outcomes[m]["saturation"]["per_s"] / outcomes[m]["ceiling"]["per_s"])
    result = {
        "task": job.task,
        "unit": job.unit,
        "model": {"ref": registered.ref, "architecture": registered.card.architecture},
        "device": "cpu",
        "threads": plan.threads,
        "batch": plan.batch,
        "flops_per_item": flops,
        "matmul_peak_gflops": peak,
        "in_process_per_s": float(np.mean([r["per_s"] for r in phases.in_process_runs])),
        "in_process_runs": phases.in_process_runs,
        **_ratios(outcomes, best_mode, flops),
        "serve": {mode: outcomes[mode] for mode in serve_modes},
        "triton": outcomes.get("triton"),
        "full_path": full_rows,
        "extra": job.extra_rows,
        "machine_load": phases.loads,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print_table(result, console)
    return result


def write_result(result: dict[str, Any], json_path: str | None, repo: Path, console) -> Path:
    out = Path(json_path) if json_path else repo / "bench" / "results" / f"{result['task']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results written to {out}")
    return out


if __name__ == "__main__":  # print a results file as markdown
    for path in sys.argv[1:]:
        print(markdown_table(json.loads(Path(path).read_text())))

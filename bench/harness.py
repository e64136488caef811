"""The model-serving comparison both benches run, on the same exported network and the same tensors:

(a) in-process: ONNX Runtime on batches in this process — the ceiling;
(b) preread on Ray Serve: KServe v2 binary requests (one batch of tensors each) to the model
    application's own route, /v2/models/<model>/infer, with Ray's default proxy and with its
    HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1);
(c) Triton (the nvidia-pytriton tritonserver) serving the same ONNX with our ORT backend inside its
    Python backend, dynamic batching with the same settings.

(b) and (c) use the same client (httpx, a prebuilt binary v2 body), at several concurrencies
(requests in flight), then at half of (b)'s saturation rate with open-loop arrivals. Achieved
GFLOP/s against the machine's fp32 matmul peak measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LoadPlan:
    batch: int  # tensors per request (= the model's max_batch_size)
    concurrencies: list[int]  # requests in flight
    requests: int  # per level
    half_load_requests: int = 40
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = the fastest here now


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


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


def cpu_seconds(pids: list[int] | None = None, descendants_of: int | None = None) -> float:
    """User+system CPU seconds of processes ``pids`` and/or all descendants of ``descendants_of``
    (still alive; Ray's and Triton's processes live for the whole phase being measured)."""
    import psutil  # noqa: PLC0415

    procs = []
    for pid in pids or []:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    if descendants_of is not None:
        procs += psutil.Process(descendants_of).children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def server_and_client_cpu() -> tuple[float, float]:
    """(CPU s of this process's descendants — the serving system under test —, CPU s of this
    process — the load-generating client)."""
    me = os.getpid()
    return cpu_seconds(descendants_of=me), cpu_seconds([me])


def machine_load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "cpus": os.cpu_count() or 0}


def matmul_peak_gflops(threads: int, n: int = 1024, seconds: float = 2.0) -> float:
    """Best fp32 GFLOP/s of torch.matmul on n×n matrices with ``threads`` threads."""
    import torch  # noqa: PLC0415

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            for _ in range(4):
                torch.matmul(a, b)
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - started) / 1e9)
        return best
    finally:
        torch.set_num_threads(previous)


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
    from models.backends import OnnxRuntimeBackend  # noqa: PLC0415

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


def v2_body(tensors: np.ndarray, priority: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A binary KServe v2 request (what tritonclient sends) and its headers."""
    raw = np.ascontiguousarray(tensors, dtype=np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(tensors.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    if priority:
        header["parameters"] = {"priority": priority}
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"}


def decode_v2(content: bytes, header_length: str | None) -> np.ndarray:
    if header_length is None:
        answer = json.loads(content)
        out = answer["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    head = json.loads(content[: int(header_length)])
    out = head["outputs"][0]
    return np.frombuffer(content[int(header_length) :], dtype=np.float32).reshape(out["shape"])


async def _closed_loop(url: str, body: bytes, headers: dict, concurrency: int, requests: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    latencies: list[float] = []
    failures: list[str] = []
    remaining = [requests]
    first: list[np.ndarray] = []

    async def worker(client):
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000.0)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
            elif not first:
                first.append(decode_v2(response.content, response.headers.get("inference-header-content-length")))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await worker_warmup(client, url, body, headers)
        server_cpu, client_cpu = server_and_client_cpu()
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        server_after, client_after = server_and_client_cpu()
    return {
        "concurrency": concurrency,
        "requests": requests,
        "failures": len(failures),
        "errors": failures[:3],
        "elapsed_s": elapsed,
        "req_per_s": requests / elapsed,
        "latencies": latencies,
        "first": first,
        "server_cpu_s": server_after - server_cpu,
        "client_cpu_s": client_after - client_cpu,
    }


async def worker_warmup(client, url, body, headers) -> None:
    for _ in range(2):
        await client.post(url, content=body, headers=headers)


async def _open_loop(url: str, body: bytes, headers: dict, rate_per_s: float, requests: int) -> dict[str, Any]:
    """Requests at a fixed rate (evenly spaced arrivals), whatever the answers do."""
    import httpx  # noqa: PLC0415

    latencies: list[float] = []
    failures = 0

    async def one(client):
        nonlocal failures
        started = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000.0)
        failures += response.status_code != 200

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        await worker_warmup(client, url, body, headers)
        tasks = []
        started = time.perf_counter()
        for i in range(requests):
            delay = started + i / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {
        "rate_per_s": rate_per_s,
        "requests": requests,
        "failures": failures,
        "elapsed_s": elapsed,
        "latencies": latencies,
    }


def summarise(raw: dict[str, Any], batch: int) -> dict[str, Any]:
    latencies = raw.pop("latencies")
    raw.pop("first", None)
    raw.update(p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99))
    raw["per_s"] = raw["requests"] * batch / raw["elapsed_s"]
    if "server_cpu_s" in raw:
        raw["server_cpu_ms_per_item"] = raw["server_cpu_s"] * 1000 / (raw["requests"] * batch)
        raw["client_cpu_ms_per_item"] = raw["client_cpu_s"] * 1000 / (raw["requests"] * batch)
    return raw


def load_levels(
    url: str,
    tensors: np.ndarray,
    plan: LoadPlan,
    headers: dict[str, str] | None = None,
    reference: np.ndarray | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Closed-loop levels, then the half-load open-loop run at half the best level's rate."""
    body, v2_headers = v2_body(tensors[: plan.batch])
    headers = {**v2_headers, **(headers or {})}
    levels = []
    for concurrency in plan.concurrencies:
        raw = asyncio.run(_closed_loop(url, body, headers, concurrency, plan.requests))
        if reference is not None and raw["first"]:
            np.testing.assert_allclose(
                raw["first"][0], reference, atol=1e-4, err_msg=f"{url} answers differ from ONNX Runtime in-process"
            )
        level = summarise(raw, plan.batch)
        levels.append(level)
        progress(
            f"  c={concurrency}: {level['per_s']:.1f}/s p50 {level['p50_ms']:.0f} ms p95 {level['p95_ms']:.0f} ms"
            f" server CPU {level['server_cpu_ms_per_item']:.2f} ms/item failures {level['failures']}"
        )
    best = max(levels, key=lambda level: level["per_s"])
    half = summarise(
        asyncio.run(_open_loop(url, body, headers, best["req_per_s"] / 2, plan.half_load_requests)), plan.batch
    )
    progress(f"  half load ({half['rate_per_s']:.1f} req/s): p50 {half['p50_ms']:.0f} ms p95 {half['p95_ms']:.0f} ms")
    return {"levels": levels, "saturation": best, "half_load": half}


@contextlib.contextmanager
def triton_server(cfg, task: str, plan: LoadPlan) -> Iterator[Any]:
    """Triton serving the task's registered ONNX with the same batching as preread's deployment."""
    from serving.replica.triton.repository import write_repository  # noqa: PLC0415
    from serving.replica.triton.server import TritonServer  # noqa: PLC0415

    repository = Path(tempfile.mkdtemp(prefix="preread-bench-triton-"))
    # The same batching as preread's replica in bench_config (and no priority levels: they
    # stall Triton 2.51's batcher, see serving/replica/triton/repository.py).
    write_repository(
        repository,
        cfg,
        [task],
        intra_op_threads=plan.threads,
        max_batch_size=plan.batch,
        max_queue_delay_us=2000,
        preferred_batch_sizes=[],
    )
    with TritonServer(repository) as server:
        yield server


@contextlib.contextmanager
def ray_serve(cfg, haproxy: bool, num_cpus: float | None = None) -> Iterator[str]:
    """Ray + Serve with preread's applications deployed; yields the HTTP base URL. HAProxy mode is
    read by Ray Serve at start, so each mode gets its own Ray instance."""
    import ray  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from serving.app import deploy  # noqa: PLC0415

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if haproxy else "0"
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": cfg.http.port})
        deploy(cfg)
        base = f"http://127.0.0.1:{cfg.http.port}"
        _wait_ready(base)
        yield base
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        os.environ.pop("RAY_SERVE_ENABLE_HA_PROXY", None)


def _wait_ready(base: str, timeout_s: float = 120.0) -> None:
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{base}/readyz not ready after {timeout_s:.0f} s")


def bench_config(
    base_cfg,
    task: str,
    state: Path,
    plan: LoadPlan,
    models: list[str],
    port: int,
    dicom: bool = False,
    dicom_updates: dict | None = None,
):
    """The serving config for a bench run: temp state, the measured model with the bench's batch
    and threads, one replica."""
    from serving.config_inference import DeploymentConfig  # noqa: PLC0415

    models_cfg = {name: base_cfg.models[name] for name in models}
    models_cfg[task] = models_cfg[task].model_copy(update={"intra_op_threads": plan.threads, "backend": "onnxruntime"})
    deployment: DeploymentConfig = getattr(base_cfg.deployments, task).model_copy(
        update={
            "num_replicas": 1,
            "max_batch_size": plan.batch,
            "max_ongoing_requests": max(64, 4 * plan.batch),
            "batch_wait_timeout_s": 0.002,
        }
    )
    return base_cfg.model_copy(
        update={
            "models": models_cfg,
            "deployments": base_cfg.deployments.model_copy(update={task: deployment}),
            "dicom": base_cfg.dicom.model_copy(update={"enabled": dicom, **(dicom_updates or {})}),
            "http": base_cfg.http.model_copy(update={"port": port}),
            "storage": base_cfg.storage.model_copy(update={"root": state / "objects"}),
            "database": base_cfg.database.model_copy(update={"url": f"sqlite:///{state / 'bench.db'}"}),
            "auth": base_cfg.auth.model_copy(update={"secret_file": state / "secret.key"}),
        }
    )


def token(cfg, role: str = "datasci", sites: tuple[str, ...] = ("demo",)) -> str:
    from serving.auth.tokens import TokenService, load_secret  # noqa: PLC0415

    return TokenService(load_secret(cfg.auth.secret_file)).issue("bench", role, list(sites))


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


def run_comparison(job: Comparison, console) -> dict[str, Any]:
    from models.flops import onnx_flops  # noqa: PLC0415
    from serving.replica.triton.server import free_port  # noqa: PLC0415
    from serving.store.db import Database  # noqa: PLC0415

    plan = job.plan
    say = console.print
    registered = job.base_cfg.registry.open().resolve(job.base_cfg.models[job.task].ref)
    flops = onnx_flops(registered.onnx_path, [1, *job.tensors.shape[1:]])
    loads = {"start": machine_load()}
    if plan.threads <= 0:
        plan.threads = best_threads(registered.onnx_path, job.tensors, plan, say)
    peak = matmul_peak_gflops(os.cpu_count() or 1)
    say(
        f"[bold]{job.task.upper()} serving benchmark[/] {registered.ref} ({registered.card.architecture}), "
        f"{flops / 1e6:.1f} MFLOP per {job.unit[:-1]}, batch {plan.batch}, {plan.threads} threads; "
        f"fp32 matmul peak {peak:.1f} GFLOP/s; load {loads['start']}"
    )
    in_process_runs: list[dict] = []

    def measure_in_process() -> dict:
        run = in_process(registered.onnx_path, job.tensors, plan)
        run.pop("reference", None)
        in_process_runs.append(run)
        say(
            f"(a) in-process: {run['per_s']:.1f} {job.unit}/s, batch of {plan.batch} in {run['batch_ms_p50']:.1f} ms, "
            f"CPU {run['cpu_ms_per_item']:.2f} ms/item"
        )
        return run

    reference = in_process(registered.onnx_path, job.tensors, plan, seconds=0.5)["reference"]
    measure_in_process()
    phases: dict[str, dict] = {}

    def served(name: str, outcome: dict) -> None:
        before = in_process_runs[-1]
        after = measure_in_process()
        outcome["ceiling"] = _ceiling([before, after])
        phases[name] = outcome
        loads[f"after_{name}"] = machine_load()

    if job.triton:
        try:
            with triton_server(job.base_cfg, job.task, plan) as server:
                say(f"(c) Triton {server.http_url}")
                outcome = load_levels(
                    f"http://{server.http_url}/v2/models/{job.task}/infer",
                    job.tensors,
                    plan,
                    reference=reference,
                    progress=say,
                )
            served("triton", outcome)
        except Exception as exc:  # no Triton here: the row says why
            say(f"[yellow](c) Triton not run: {type(exc).__name__}: {exc}[/]")
            phases["triton"] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}

    full_rows: list[dict] = []
    for haproxy in job.haproxy_modes:
        mode = "haproxy" if haproxy else "ray-proxy"
        state = Path(tempfile.mkdtemp(prefix=f"preread-bench-{job.task}-"))
        cfg = bench_config(job.base_cfg, job.task, state, plan, job.models, free_port(), job.dicom, job.dicom_updates)
        Database(cfg.database.url).migrate()
        say(f"(b) preread on Ray Serve, {mode}")
        with ray_serve(cfg, haproxy) as base:
            outcome = load_levels(
                f"{base}/v2/models/{job.task}/infer",
                job.tensors,
                plan,
                headers={"Authorization": f"Bearer {token(cfg)}"},
                reference=reference,
                progress=say,
            )
            if job.full_path is not None:
                for row in job.full_path(cfg, base, say):
                    full_rows.append({**row, "proxy": mode})
        served(mode, outcome)

    serve_modes = [m for m in ("ray-proxy", "haproxy") if m in phases]
    best_mode = max(serve_modes, key=lambda m: phases[m]["saturation"]["per_s"] / phases[m]["ceiling"]["per_s"])
    best = phases[best_mode]
    triton = phases.get("triton")
    triton_ok = triton is not None and "error" not in triton
    serve_per_s = best["saturation"]["per_s"]
    triton_per_s = triton["saturation"]["per_s"] if triton_ok else None
    result = {
        "task": job.task,
        "unit": job.unit,
        "model": {"ref": registered.ref, "architecture": registered.card.architecture},
        "device": "cpu",
        "threads": plan.threads,
        "batch": plan.batch,
        "flops_per_item": flops,
        "matmul_peak_gflops": peak,
        "in_process_per_s": float(np.mean([r["per_s"] for r in in_process_runs])),
        "in_process_runs": in_process_runs,
        "serve_per_s": serve_per_s,
        "serve_proxy": best_mode,
        "triton_per_s": triton_per_s,
        "p50_ms": best["saturation"]["p50_ms"],
        "p95_ms": best["saturation"]["p95_ms"],
        "p99_ms": best["saturation"]["p99_ms"],
        # ratios against the in-process runs measured just before and after each served phase
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
        "serve": {mode: phases[mode] for mode in serve_modes},
        "triton": triton,
        "full_path": full_rows,
        "extra": job.extra_rows,
        "machine_load": loads,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print_table(result, console)
    return result


COLUMNS = ("path", "conc.", "{unit}/s", "p50 ms", "p95 ms", "p99 ms", "÷ (a)", "CPU ms/item", "GFLOP/s", "% peak")


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The result as table rows (COLUMNS): the printed table and the markdown of docs/benchmarks.md."""
    peak, flops = result["matmul_peak_gflops"], result["flops_per_item"]
    rows: list[tuple[str, ...]] = []

    def row(label, concurrency, per_s, level=None, ceiling=None, cpu=None):
        g = per_s * flops / 1e9 if per_s else None
        rows.append(
            (
                label,
                str(concurrency),
                f"{per_s:.1f}" if per_s else "-",
                *(f"{level[k]:.0f}" if level else "" for k in ("p50_ms", "p95_ms", "p99_ms")),
                f"{per_s / ceiling:.2f}" if ceiling else "",
                f"{cpu:.2f}" if cpu else "",
                f"{g:.1f}" if g else "",
                f"{100 * g / peak:.0f}" if g else "",
            )
        )

    for i, run in enumerate(result["in_process_runs"]):
        row(
            f"(a) ONNX Runtime in-process, batch {result['batch']} (run {i + 1})",
            "-",
            run["per_s"],
            cpu=run["cpu_ms_per_item"],
        )
    served = [("(c) Triton, Python backend + ORT", result["triton"])] if result["triton"] else []
    served = [
        (f"(b) preread v2 binary, Ray Serve {mode}", outcome) for mode, outcome in result["serve"].items()
    ] + served
    for label, outcome in served:
        if "error" in outcome:
            rows.append((label, "-", "not run", "", "", "", "", "", "", ""))
            continue
        ceiling = outcome["ceiling"]["per_s"]
        for level in outcome["levels"]:
            row(label, level["concurrency"], level["per_s"], level, ceiling, level.get("server_cpu_ms_per_item"))
        half = outcome["half_load"]
        row(f"{label}, half load ({half['rate_per_s']:.1f} req/s)", "open", half["per_s"], half, ceiling)
    for extra in result["extra"]:
        rows.append((extra["label"], "-", f"{extra['per_s']:.2f}", "", "", "", "", "", "", ""))
    for full in result["full_path"]:
        rows.append(
            (
                f"{full['label']}, {full['proxy']}",
                str(full["concurrency"]),
                f"{full['per_s']:.2f}",
                f"{full['p50_ms']:.0f}",
                f"{full['p95_ms']:.0f}",
                f"{full['p99_ms']:.0f}",
                "",
                "",
                "",
                "",
            )
        )
    return rows


def summary_line(result: dict[str, Any]) -> str:
    triton_ratio = f"{result['serve_over_triton']:.2f}" if result["serve_over_triton"] else "n/a"
    efficiency = ", ".join(f"{mode} {value:.2f}" for mode, value in result["cpu_efficiency"].items())
    return (
        f"(b)/(a) at saturation {result['serve_over_in_process']:.2f} (goal ≥ 0.85, {result['serve_proxy']}); "
        f"(b)/(c) {triton_ratio} (goal ≥ 1, each against its own (a)); p95 at half load ÷ model's batch time "
        f"{result['half_load_p95_over_model']:.2f} (goal ≤ 2); CPU per item (a) ÷ served: {efficiency}"
    )


def print_table(result: dict[str, Any], console) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(
        title=f"preread {result['task'].upper()} serving benchmark — one run, this machine "
        f"(batch {result['batch']}, {result['threads']} ORT threads, "
        f"matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s on all cores)"
    )
    for column in COLUMNS:
        table.add_column(column.format(unit=result["unit"]), justify="right")
    for cells in table_rows(result):
        table.add_row(*cells)
    console.print(table)
    console.print(summary_line(result))


def markdown_table(result: dict[str, Any]) -> str:
    """The same table in markdown (``python -m bench.harness bench/results/ecg.json``)."""
    header = [c.format(unit=result["unit"]) for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    return "\n".join(lines) + "\n\n" + summary_line(result) + "\n"


def write_result(result: dict[str, Any], json_path: str | None, repo: Path, console) -> Path:
    out = Path(json_path) if json_path else repo / "bench" / "results" / f"{result['task']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results written to {out}")
    return out


if __name__ == "__main__":  # print a results file as markdown
    import sys

    for path in sys.argv[1:]:
        print(markdown_table(json.loads(Path(path).read_text())))

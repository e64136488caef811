"""`preread bench ecg`: ECGs per second and latency through preread's HTTP API on Ray Serve,
beside the same model and pipeline in-process on batches, measured in one run on one machine.

(a) network alone: backend.predict on preprocessed batches (the compute ceiling);
(b) in-process pre-read: EcgPreReader.read_batch (preprocess + network + measurements + triage);
(c) HTTP: POST /api/v1/ecg (DICOM waveform; new UIDs each request so nothing is deduplicated)
    at several concurrency levels, through the ingress and the batched model deployment, including
    the durable store and the worklist row.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def dicom_ecg_bodies(n: int) -> list[bytes]:
    """n copies of pydicom's real 12-lead ECG, each with new Study/Series/SOP UIDs."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    bodies = []
    for _ in range(n):
        template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        bodies.append(buffer.getvalue())
    return bodies


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


def bench_in_process(reader, inputs, batch_size: int = 32, repeats: int = 2) -> dict[str, float]:
    batch = np.stack([reader.preprocess(item) for item in inputs[:batch_size]]).astype(np.float32)
    reader.backend.predict(batch)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        reader.backend.predict(batch)
    model_per_s = repeats * len(batch) / (time.perf_counter() - started)
    return {"model_per_s": model_per_s,
            "in_process_per_s": batched_reads_per_s(reader, inputs, batch_size, repeats)}


async def _http_load(base: str, token: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"content-type": "application/dicom", "Authorization": f"Bearer {token}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await client.post("/api/v1/ecg", content=body, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            if r.status_code not in (200, 201):
                failures += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency, "requests": len(bodies), "failures": failures,
        "per_s": len(bodies) / elapsed, "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
    }


def run_bench(task: str, json_path: str | None = None, quick: bool = False) -> int:
    if task == "cxr":
        from bench.cxr_bench import run_cxr_bench

        return run_cxr_bench(json_path, quick)
    if task != "ecg":
        print(f"bench {task}: not built yet")
        return 2
    import ray
    from ray import serve
    from rich.console import Console
    from rich.table import Table

    from datasets.ecg.readers import read_ecg
    from datasets.ecg.validate import validate_record
    from models.ecg.pipeline import EcgInput, EcgPreReader
    from preread.cli import ensure_demo_models
    from serving.app import build_app
    from serving.auth import TokenService, load_secret
    from serving.config import load_config
    from serving.store.db import Database

    console = Console(width=140)  # a full-width table in logs and CI output too
    base_cfg = load_config().resolved()
    ensure_demo_models(base_cfg, ["ecg"])
    # Sized for this 2-core machine (the measurement step makes a pre-read ~10x the network's cost):
    # each HTTP level runs long enough for batches to fill, the whole bench a few minutes.
    n_requests = 48 if quick else 128
    concurrencies = [1, 16] if quick else [1, 8, 32, 64]

    bodies = dicom_ecg_bodies(n_requests * len(concurrencies) + 8)
    record = validate_record(read_ecg(bodies[0], "application/dicom"))
    inputs = [EcgInput(record.signals.astype(np.float32), record.sampling_rate)] * (32 if quick else 96)
    model = base_cfg.models["ecg"]
    reader = EcgPreReader.from_registry(base_cfg.registry.open(), model.ref, base_cfg.triage_path("ecg"),
                                        backend=model.backend, intra_op_threads=None)
    console.print(f"[bold]ECG benchmark[/] model {reader.model_identity['name']} v{reader.model_identity['version']}"
                  f" ({reader.model_identity['architecture']}) on {reader.backend.device}")
    in_process = bench_in_process(reader, inputs)
    console.print(f"in-process: network {in_process['model_per_s']:.1f}/s, "
                  f"whole pre-read {in_process['in_process_per_s']:.1f}/s")

    state = Path(tempfile.mkdtemp(prefix="preread-bench-"))
    cfg = base_cfg.model_copy(update={
        # Only the model under test, and no DICOM listener: the bench measures the ECG HTTP path.
        "models": {"ecg": base_cfg.models["ecg"]},
        "dicom": base_cfg.dicom.model_copy(update={"enabled": False}),
        "http": base_cfg.http.model_copy(update={"port": 8765}),
        "storage": base_cfg.storage.model_copy(update={"root": state / "objects"}),
        "database": base_cfg.database.model_copy(update={"url": f"sqlite:///{state / 'bench.db'}"}),
        "auth": base_cfg.auth.model_copy(update={"secret_file": state / "secret.key"}),
    })
    Database(cfg.database.url).migrate()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    http_rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": cfg.http.port})
        serve.run(build_app(cfg), name="preread", route_prefix="/")
        token = TokenService(load_secret(cfg.auth.secret_file)).issue("bench", "grassroots", ["demo"])
        base = f"http://127.0.0.1:{cfg.http.port}"
        asyncio.run(_http_load(base, token, bodies[-8:], 4))  # warm-up
        for i, concurrency in enumerate(concurrencies):
            chunk = bodies[i * n_requests : (i + 1) * n_requests]
            row = asyncio.run(_http_load(base, token, chunk, concurrency))
            http_rows.append(row)
            console.print(f"HTTP c={concurrency}: {row['per_s']:.1f}/s p50 {row['p50_ms']:.0f} ms "
                          f"p95 {row['p95_ms']:.0f} ms failures {row['failures']}")
    finally:
        serve.shutdown()
        ray.shutdown()

    best = max(http_rows, key=lambda r: r["per_s"])
    table = Table(title="preread ECG serving benchmark (one run, this machine)")
    for column in ("path", "concurrency", "ECGs/s", "p50 ms", "p95 ms", "p99 ms", "÷ in-process"):
        table.add_column(column, justify="right")
    table.add_row("(a) network alone, batch 32", "-", f"{in_process['model_per_s']:.1f}", "", "", "", "")
    table.add_row("(b) in-process pre-read, batch 32", "-", f"{in_process['in_process_per_s']:.1f}", "", "", "", "1.00")
    for row in http_rows:
        table.add_row("(c) HTTP → Ray Serve", str(row["concurrency"]), f"{row['per_s']:.1f}", f"{row['p50_ms']:.0f}",
                      f"{row['p95_ms']:.0f}", f"{row['p99_ms']:.0f}", f"{row['per_s'] / in_process['in_process_per_s']:.2f}")
    console.print(table)
    result = {
        "task": task, "model": reader.model_identity, "device": str(reader.backend.device),
        "cpu_count": os.cpu_count(), "model_per_s": in_process["model_per_s"],
        "in_process_per_s": in_process["in_process_per_s"], "serve_per_s": best["per_s"], "triton_per_s": None,
        "serve_over_in_process": best["per_s"] / in_process["in_process_per_s"],
        "p50_ms": best["p50_ms"], "p95_ms": best["p95_ms"], "p99_ms": best["p99_ms"],
        "http": http_rows, "quick": quick, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(json_path) if json_path else REPO / "bench" / "results" / f"{task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results written to {out}")
    return 0 if all(r["failures"] == 0 for r in http_rows) else 1

"""`preread bench ecg|cxr`: the served model against itself in-process and against Triton, measured in
one run on one machine (bench/harness.py has the comparison; this file the ECG specifics).

ECG rows:
(a)  the network alone: ONNX Runtime in-process on batches of real CinC ECGs (the ceiling);
(b)  preread on Ray Serve: KServe v2 binary batches to /v2/models/ecg/infer (default proxy, HAProxy);
(c)  Triton serving the same ONNX (pytriton's tritonserver, Python backend, dynamic batching);
and the whole pre-read: EcgPreReader.read_batch in-process (preprocess + network + measurements
+ triage), and POST /api/v1/ecg through the ingress (DICOM waveform parse, durable store,
worklist row; new UIDs each request so nothing is deduplicated).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import Comparison, LoadPlan, percentile, run_comparison, token, write_result
from datasets.ecg.readers import read_wfdb
from datasets.ecg.transforms import preprocess_signals
from serving.config import load_config

REPO = Path(__file__).resolve().parents[1]
# The real samples beside the repository (../shared/data), as the tests find them.
SHARED_DATA = Path(os.environ.get("PREREAD_SHARED_DATA", REPO.parent / "shared" / "data"))


async def _http_load(base: str, token: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
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
        "concurrency": concurrency,
        "requests": len(bodies),
        "failures": failures,
        "per_s": len(bodies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def cinc_tensors(n: int) -> np.ndarray:
    """n preprocessed real ECGs (the CinC 2021 samples, repeated as needed): float32 [n, 12, 5000]."""
    headers = sorted((SHARED_DATA / "ecg" / "cinc2021").glob("*.hea"))
    if not headers:
        raise SystemExit("bench ecg: no CinC records under ../shared/data/ecg/cinc2021")
    batch = []
    for i in range(n):
        record = read_wfdb(headers[i % len(headers)]).in_standard_order()
        batch.append(preprocess_signals(record.signals, record.sampling_rate))
    return np.stack(batch).astype(np.float32)


def _whole_read_in_process(base_cfg, quick: bool, batch: int, console) -> dict[str, Any]:
    """The whole pre-read, in-process: parse + validate + measure + quality + network + statements
    + triage, per upload kind (printed)."""
    from bench import ecg_whole_read as whole_read  # noqa: PLC0415 - the ECG reading stack only for `bench ecg`
    from models.ecg.pipeline import EcgPreReader  # noqa: PLC0415 - `bench cxr` must not load the ECG stack

    reader = EcgPreReader.from_registry(
        base_cfg.registry.open(), base_cfg.models["ecg"].ref, base_cfg.triage_path("ecg"), backend="onnxruntime"
    )
    whole = whole_read.whole_read_by_kind(reader, whole_read.sample_uploads(SHARED_DATA, 64 if quick else 256), batch)
    whole_read.print_whole_read(whole, console)
    return whole


def _post_ecg_rows(bodies: list[bytes], concurrencies: list[int], per_level: int):
    """The whole pre-read rows served: POST /api/v1/ecg at each concurrency, ``per_level`` fresh DICOM
    bodies each (a body is never sent twice: a repeat would be answered from the store)."""
    used = [0]

    def full_path(cfg, base, say) -> list[dict]:
        rows = []
        grassroots = token(cfg, role="grassroots")
        for concurrency in concurrencies:
            chunk = bodies[used[0] : used[0] + per_level]
            used[0] += per_level
            if len(chunk) < per_level:
                break
            row = asyncio.run(_http_load(base, grassroots, chunk, concurrency))
            row["label"] = "whole pre-read: POST /api/v1/ecg (DICOM, store, worklist)"
            say(f"  POST /api/v1/ecg c={concurrency}: {row['per_s']:.1f}/s p50 {row['p50_ms']:.0f} ms")
            rows.append(row)
        return rows

    return full_path


def run_ecg_bench(
    json_path: str | None,
    quick: bool,
    triton: bool,
    haproxy_modes: tuple[bool, ...],
    batch: int = 32,
    whole_read_only: bool = False,
) -> int:
    """`preread bench ecg`: the whole read in-process, then rows (a), (b), (c) and POST /api/v1/ecg."""
    from rich.console import Console  # noqa: PLC0415 - rich loads only when a bench prints

    from bench.ecg_whole_read import dicom_ecg_bodies  # noqa: PLC0415 - the ECG reading stack only for `bench ecg`
    from training.demo import ensure_demo_models  # noqa: PLC0415 - loads torch and the training code

    console = Console(width=150)
    base_cfg = load_config().resolved()
    ensure_demo_models(base_cfg, ["ecg"])
    plan = LoadPlan(
        batch=batch,
        concurrencies=[1, 4] if quick else [1, 2, 4, 8],
        requests=12 if quick else 40,
        half_load_requests=12 if quick else 40,
    )
    full_concurrencies = [1, 8] if quick else [1, 8, 32]
    per_level = 16 if quick else 40
    bodies = dicom_ecg_bodies(per_level * len(full_concurrencies) * len(haproxy_modes))
    whole = _whole_read_in_process(base_cfg, quick, plan.batch, console)
    preread_per_s = whole["mixed"]["per_s"]
    if whole_read_only:
        if json_path:
            Path(json_path).write_text(
                json.dumps({"whole_in_process_per_s": preread_per_s, "whole_read": whole}, indent=2)
            )
        return 0
    job = Comparison(
        task="ecg",
        unit="ECGs",
        base_cfg=base_cfg,
        tensors=cinc_tensors(plan.batch),
        plan=plan,
        models=["ecg"],
        triton=triton,
        haproxy_modes=haproxy_modes,
        full_path=_post_ecg_rows(bodies, full_concurrencies, per_level),
        extra_rows=[{"label": "whole pre-read in-process (parse + read_batch)", "per_s": preread_per_s}],
    )
    result = run_comparison(job, console)
    result["in_process_preread_per_s"] = preread_per_s
    result["whole_in_process_per_s"] = preread_per_s
    result["whole_read"] = whole
    served = [row["per_s"] for row in result["full_path"] if not row.get("failures")]
    result["whole_served_per_s"] = max(served) if served else None
    result["quick"] = quick
    write_result(result, json_path, REPO, console)
    failures = sum(level["failures"] for mode in result["serve"].values() for level in mode["levels"])
    failures += sum(row["failures"] for row in result["full_path"])
    return 0 if failures == 0 else 1


def run_bench(
    task: str,
    json_path: str | None = None,
    quick: bool = False,
    triton: bool = True,
    haproxy: str = "both",
    batch: int = 32,
    whole_read_only: bool = False,
) -> int:
    """``batch``: tensors per KServe v2 request, and the batch of every path ((a), (b), (c))."""
    modes = {"on": (True,), "off": (False,), "both": (False, True)}[haproxy]
    if task == "cxr":
        from bench.cxr_bench import run_cxr_bench  # noqa: PLC0415 - `bench cxr` alone loads the CXR reading stack

        return run_cxr_bench(json_path, quick, triton, modes, batch)
    if task != "ecg":
        print(f"bench {task}: not built yet")
        return 2
    return run_ecg_bench(json_path, quick, triton, modes, batch, whole_read_only=whole_read_only)

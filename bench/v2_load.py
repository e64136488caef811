"""KServe v2 load against one URL: the binary request body, its decoding, closed-loop levels
(requests in flight) and the open-loop half-load run — the same client for preread and for Triton.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from bench.measure import LoadPlan, percentile, server_and_client_cpu


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

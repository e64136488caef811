"""What the bench measures with, on this machine: the load plan, percentiles, CPU seconds of the
processes under test, the load average and the fp32 matmul peak (the yardstick of achieved GFLOP/s).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

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


def cpu_seconds(pids: list[int] | None = None, descendants_of: int | None = None) -> float:
    """User+system CPU seconds of processes ``pids`` and/or all descendants of ``descendants_of``
    (still alive; Ray's and Triton's processes live for the whole phase being measured)."""
    import psutil  # noqa: PLC0415 - not a dependency of ours (Ray brings it); loaded when CPU time is measured

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
    import torch  # noqa: PLC0415 - heavy; the ECG and CXR serving benches load it only for the peak

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

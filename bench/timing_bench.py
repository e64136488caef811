"""`preread bench timings`: the speed figures that used to be timed asserts in unit tests, measured
and printed as a table instead (a unit test checks behaviour; how fast is a benchmark's question).

- batcher: how long a lone request waits in the PriorityBatcher before its batch of one is sent
  (goal: about wait_timeout_s, never seconds);
- bootstrap: the percentile stratified bootstrap of AUROC (200 resamples of 150 cases) per call.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from evaluation.bootstrap import bootstrap
from evaluation.metrics import auroc
from serving.replica.batching import PriorityBatcher


async def _echo(payloads: list) -> list:
    return payloads


def batcher_lone_wait_ms(repeats: int, wait_timeout_s: float = 0.05) -> list[float]:
    async def one() -> float:
        batcher = PriorityBatcher(_echo, max_batch_size=32, wait_timeout_s=wait_timeout_s)
        return (await batcher.submit("x")).queue_ms

    return [asyncio.run(one()) for _ in range(repeats)]


def _auroc_statistic(y: np.ndarray, scores: np.ndarray):
    """The bootstrap's statistic: the AUROC of the resampled cases ``i``."""
    return lambda i: {"auroc": auroc(y[i], scores[i], warn=False)}


def bootstrap_auroc_seconds(repeats: int, n_boot: int = 200) -> list[float]:
    rng = np.random.default_rng(2024)
    y = np.r_[np.ones(60), np.zeros(90)]
    out = []
    for rep in range(repeats):
        scores = np.r_[rng.normal(1, 1, 60), rng.normal(0, 1, 90)]
        start = time.perf_counter()
        bootstrap(_auroc_statistic(y, scores), len(y), y, n_boot=n_boot, seed=rep)
        out.append(time.perf_counter() - start)
    return out


def run_timing_bench(json_path: str | None = None, quick: bool = False) -> int:
    repeats = 5 if quick else 30
    rows = {
        "batcher lone request wait (ms), timeout 50 ms": batcher_lone_wait_ms(repeats),
        "bootstrap AUROC, 200 resamples x 150 cases (s)": bootstrap_auroc_seconds(max(3, repeats // 5)),
    }
    print(f"{'measure':<50} {'n':>4} {'median':>10} {'p95':>10} {'max':>10}")
    table = {}
    for name, values in rows.items():
        stats = {
            "n": len(values),
            "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)),
            "max": float(np.max(values)),
        }
        table[name] = stats
        print(f"{name:<50} {stats['n']:>4} {stats['median']:>10.3f} {stats['p95']:>10.3f} {stats['max']:>10.3f}")
    if json_path:
        Path(json_path).write_text(json.dumps(table, indent=2))
    return 0

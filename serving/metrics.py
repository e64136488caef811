"""Prometheus metrics.

Two places, one naming scheme (``preread_*``):

- The ingress's ``GET /metrics`` (prometheus_client, one registry per replica process): HTTP
  requests, ingest, AI reads and failures, and — from the timing each model reply carries back —
  per-model call latency, queue time vs compute time, batch size; plus the worklist depth per
  level, counted in the database at every scrape (``WorklistDepthCollector``).
- The model replicas (``ReplicaMetrics``, through ``ray.util.metrics``): the same model numbers
  for everything a replica serves, including KServe v2 calls that reach it directly without the
  ingress. Ray exports them on each node's metrics port (``ray_preread_*``) beside Ray Serve's
  own per-deployment metrics; scrape every node (docs/serving.md, "Metrics").
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("preread.metrics")

REGISTRY = CollectorRegistry()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter("preread_requests_total", "HTTP requests", ["route", "method", "status"], registry=REGISTRY)
INGESTED = Counter("preread_ingested_total", "Objects accepted and stored", ["modality", "source"], registry=REGISTRY)
REJECTED = Counter("preread_rejected_total", "Objects refused, by field", ["modality", "field"], registry=REGISTRY)
AI_READS = Counter("preread_ai_reads_total", "AI reads recorded", ["modality", "level"], registry=REGISTRY)
AI_FAILURES = Counter("preread_ai_failures_total", "AI reads that failed", ["modality"], registry=REGISTRY)
READ_SECONDS = Histogram(
    "preread_read_seconds",
    "Time from accept to recorded AI read",
    ["modality"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

# Model calls, per model and path ("read": a whole pre-read; "infer": raw tensors, KServe v2).
MODEL_CALLS = Counter(
    "preread_model_requests_total", "Model calls by outcome", ["model", "path", "outcome"], registry=REGISTRY
)
MODEL_LATENCY = Histogram(
    "preread_model_latency_seconds",
    "Model call round trip as the caller sees it",
    ["model", "path"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_QUEUE = Histogram(
    "preread_model_queue_seconds",
    "Time queued on the model replica before its batch ran",
    ["model", "priority"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_COMPUTE = Histogram(
    "preread_model_compute_seconds",
    "Compute time of the batch a call ran in",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_BATCH = Histogram(
    "preread_model_batch_size", "Items in the batch a call ran in", ["model"], buckets=BATCH_BUCKETS, registry=REGISTRY
)


def record_model_call(model: str, path: str, seconds: float, timing: dict[str, Any] | None, ok: bool = True) -> None:
    """One model call seen from the ingress: its round trip, and the replica's ``timing``
    (queue_ms, compute_ms, batch_size, priority — what serving.replica.batching.Batched.timing gives)."""
    MODEL_CALLS.labels(model, path, "ok" if ok else "error").inc()
    MODEL_LATENCY.labels(model, path).observe(seconds)
    if ok and timing and "queue_ms" in timing:
        MODEL_QUEUE.labels(model, str(timing.get("priority", "routine"))).observe(timing["queue_ms"] / 1000.0)
        MODEL_COMPUTE.labels(model).observe(timing["compute_ms"] / 1000.0)
        MODEL_BATCH.labels(model).observe(timing["batch_size"])


class WorklistDepthCollector:
    """``preread_worklist_depth{level}``: open studies per effective level, counted in the
    database when Prometheus scrapes (so it is current even when nobody opens the worklist)."""

    def __init__(self, db, aging):
        self.db, self.aging = db, aging

    def collect(self):
        family = GaugeMetricFamily(
            "preread_worklist_depth", "Open studies by effective level (after aging)", labels=["level"]
        )
        try:
            depth = self.db.open_depth_by_level(self.aging)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database hiccuped
            log.warning("worklist depth not collected: %s", exc)
            return
        for level, count in depth.items():
            family.add_metric([level], count)
        yield family


_depth_collector: WorklistDepthCollector | None = None


def watch_worklist(db, aging) -> None:
    """Count this database's worklist at each scrape (replacing an earlier database, e.g. when a
    test builds services again in the same process)."""
    global _depth_collector
    if _depth_collector is not None:
        REGISTRY.unregister(_depth_collector)
    _depth_collector = WorklistDepthCollector(db, aging)
    REGISTRY.register(_depth_collector)


class ReplicaMetrics:
    """Model-replica metrics through Ray's metrics agent (exported per node as ``ray_preread_*``).
    Created inside a replica; a no-op where Ray's metrics are unavailable."""

    def __init__(self, model: str):
        self.model = model
        self._depth_sent: tuple[float, dict[str, int]] = (0.0, {})
        try:
            from ray.util import metrics as ray_metrics  # noqa: PLC0415 - only inside a Ray replica

            ms = [b * 1000 for b in LATENCY_BUCKETS]
            self.calls = ray_metrics.Counter(
                "preread_replica_requests", "Calls served by a model replica", tag_keys=("model", "path", "outcome")
            )
            self.queue = ray_metrics.Histogram(
                "preread_replica_queue_ms",
                "Queue time on the replica (ms)",
                boundaries=ms,
                tag_keys=("model", "priority"),
            )
            self.compute = ray_metrics.Histogram(
                "preread_replica_compute_ms", "Batch compute time (ms)", boundaries=ms, tag_keys=("model",)
            )
            self.batch = ray_metrics.Histogram(
                "preread_replica_batch_size", "Items per batch", boundaries=list(BATCH_BUCKETS), tag_keys=("model",)
            )
            self.waiting = ray_metrics.Gauge(
                "preread_replica_queue_depth", "Items waiting on the replica", tag_keys=("model", "priority")
            )
        except Exception as exc:  # noqa: BLE001 - metrics must never stop a model from serving
            log.warning("replica metrics disabled: %s", exc)
            self.calls = None

    def call(self, path: str, ok: bool, timing: dict[str, Any] | None = None) -> None:
        if self.calls is None:
            return
        self.calls.inc(1, tags={"model": self.model, "path": path, "outcome": "ok" if ok else "error"})
        if ok and timing:
            self.queue.observe(timing["queue_ms"], tags={"model": self.model, "priority": str(timing["priority"])})

    def batch_done(self, size: int, compute_ms: float, depth: dict[str, int]) -> None:
        if self.calls is None:
            return
        self.compute.observe(compute_ms, tags={"model": self.model})
        self.batch.observe(size, tags={"model": self.model})
        # A gauge set costs ~1 ms here: send the queue depth when it changed, at most once a second.
        sent_at, sent = self._depth_sent
        now = time.monotonic()
        if depth != sent and now - sent_at >= 1.0:
            for level, count in depth.items():
                self.waiting.set(count, tags={"model": self.model, "priority": level})
            self._depth_sent = (now, dict(depth))

"""Prometheus metrics of the ingress (one registry per replica process)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter("preread_requests_total", "HTTP requests", ["route", "method", "status"], registry=REGISTRY)
INGESTED = Counter("preread_ingested_total", "Objects accepted and stored", ["modality", "source"], registry=REGISTRY)
REJECTED = Counter("preread_rejected_total", "Objects refused, by field", ["modality", "field"], registry=REGISTRY)
AI_READS = Counter("preread_ai_reads_total", "AI reads recorded", ["modality", "level"], registry=REGISTRY)
AI_FAILURES = Counter("preread_ai_failures_total", "AI reads that failed", ["modality"], registry=REGISTRY)
READ_SECONDS = Histogram("preread_read_seconds", "Time from accept to recorded AI read", ["modality"],
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
WORKLIST_DEPTH = Gauge("preread_worklist_depth", "Open studies at the last worklist query, by level",
                       ["level"], registry=REGISTRY)

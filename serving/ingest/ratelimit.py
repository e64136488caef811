"""Per-site ingest rate limits: a token bucket per (site, path kind), in this process.

A village clinic that re-sends its whole archive, or a misconfigured modality that loops, must
not starve the other sites of the county. Each site gets ``per_second`` sustained and ``burst`` at
once (configs/serving.yaml ``rate_limits``; per-site overrides). HTTP answers 429 with Retry-After;
the SCP answers 0xA700 (out of resources: the sender retries later). The buckets live in each
ingress replica, so with N replicas a site may send up to N times the limit; a cluster that needs
one global limit puts it on the load balancer.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from serving.config_access import RateBucket, RateLimitConfig

Kind = Literal["http", "dicom"]


class TokenBucket:
    def __init__(self, per_second: float, burst: int):
        self.rate, self.capacity = float(per_second), float(burst)
        self.tokens, self.updated = float(burst), time.monotonic()

    def take(self, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens. Returns 0 when allowed, else the seconds until they would be there."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class SiteRateLimiter:
    """One bucket per site for one kind of ingest."""

    def __init__(self, cfg: RateLimitConfig, kind: Kind):
        self.cfg, self.kind = cfg, kind
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _spec(self, site: str) -> RateBucket:
        override = self.cfg.sites.get(site)
        return (getattr(override, self.kind) if override else None) or getattr(self.cfg, self.kind)

    def check(self, site: str, cost: float = 1.0) -> float:
        """0 if the site may send now, else the seconds to wait (nothing is taken then)."""
        if not self.cfg.enabled:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(site)
            if bucket is None:
                spec = self._spec(site)
                bucket = self._buckets[site] = TokenBucket(spec.per_second, spec.burst)
            return bucket.take(cost)


def limiter_for(services: Any, kind: Kind) -> SiteRateLimiter:
    """The replica's limiter of ``kind`` (created on first use, kept on the services object)."""
    key = f"_rate_limiter_{kind}"
    limiter = services.__dict__.get(key)
    if limiter is None:
        limiter = services.__dict__.setdefault(key, SiteRateLimiter(services.config.rate_limits, kind))
    return limiter

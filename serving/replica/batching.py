"""Dynamic batching with priorities for one model replica (plain asyncio; no Ray needed).

Why not ``@serve.batch``: it serves requests first come, first served. Under load the queue in
front of a model replica is where a critical ECG would wait behind a burst of routine ones, so this
batcher keeps one queue ordered by priority (critical, urgent, routine), then arrival:

- a batch is started when ``max_batch_size`` items wait, or when the oldest waiting item has
  waited ``wait_timeout_s`` (the same two knobs as ``@serve.batch``);
- sizes count items, not requests: a KServe v2 request carrying 16 tensors takes 16 places, so a
  batch never exceeds what the model was tuned for; a request larger than a batch runs alone;
- one batch runs at a time (the network uses all its threads or its GPU); what arrives meanwhile
  waits and is ordered when the next batch is chosen — this is when priority matters;
- starvation-free: every ``aging_s`` an item waits promotes it one level, so a routine item under
  an endless stream of critical ones is served after at most ``2 * aging_s`` plus one batch;
- each result carries its own queue time, the batch's compute time and size, for metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from serving.priority import LEVELS, parse_priority, rank

log = logging.getLogger("preread.batching")

Payload = TypeVar("Payload")
BatchHandler = Callable[[list[Any]], Awaitable[Sequence[Any]]]


@dataclass
class Batched(Generic[Payload]):
    """One submitted item's result and how it was served."""

    value: Any
    priority: str
    queue_ms: float  # submitted → its batch started
    compute_ms: float  # the batch's handler time
    batch_size: int  # items in that batch (sum of sizes)
    batch_requests: int  # submissions in that batch

    def timing(self) -> dict[str, Any]:
        return {
            "queue_ms": round(self.queue_ms, 3),
            "compute_ms": round(self.compute_ms, 3),
            "batch_size": self.batch_size,
            "batch_requests": self.batch_requests,
            "priority": self.priority,
        }


@dataclass(order=True)
class _Waiting:
    enqueued: float
    seq: int
    rank: int = field(compare=False)
    size: int = field(compare=False)
    payload: Any = field(compare=False)
    future: asyncio.Future = field(compare=False)

    def effective_rank(self, now: float, aging_s: float) -> int:
        if aging_s <= 0:
            return self.rank
        return max(0, self.rank - int((now - self.enqueued) / aging_s))


class PriorityBatcher:
    """Gathers ``submit``-ted payloads into lists for ``handler`` (async; returns one result per
    payload, in order), critical first. Create it anywhere; it starts on first use in a loop."""

    def __init__(
        self,
        handler: BatchHandler,
        max_batch_size: int = 32,
        wait_timeout_s: float = 0.01,
        aging_s: float = 5.0,
        name: str = "model",
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if wait_timeout_s < 0:
            raise ValueError(f"wait_timeout_s must be >= 0, got {wait_timeout_s}")
        self.handler = handler
        self.max_batch_size = int(max_batch_size)
        self.wait_timeout_s = float(wait_timeout_s)
        self.aging_s = float(aging_s)
        self.name = name
        self._waiting: list[_Waiting] = []
        self._seq = itertools.count()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    # --- public ---------------------------------------------------------------------------------
    def configure(
        self, max_batch_size: int | None = None, wait_timeout_s: float | None = None, aging_s: float | None = None
    ) -> None:
        """Change the knobs (a model deployment's ``user_config``: serving/replica/deployment.py
        ``reconfigure``); applies from the next batch."""
        if max_batch_size is not None:
            self.max_batch_size = int(max_batch_size)
        if wait_timeout_s is not None:
            self.wait_timeout_s = float(wait_timeout_s)
        if aging_s is not None:
            self.aging_s = float(aging_s)

    def depth(self) -> dict[str, int]:
        """Items waiting, by the level they were submitted with."""
        counts = dict.fromkeys(LEVELS, 0)
        for waiting in self._waiting:
            counts[LEVELS[waiting.rank]] += waiting.size
        return counts

    async def submit(self, payload: Any, size: int = 1, priority: str | int | None = None) -> Batched:
        """Queue ``payload`` (``size`` items) and wait for its result. Raises what the handler
        raised for its batch."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        level = parse_priority(priority)
        loop = asyncio.get_running_loop()
        self._ensure_worker(loop)
        waiting = _Waiting(time.monotonic(), next(self._seq), rank(level), int(size), payload, loop.create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        return await waiting.future

    # --- the loop ---------------------------------------------------------------------------------
    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._run(), name=f"batcher-{self.name}")

    def _queued_items(self) -> int:
        return sum(w.size for w in self._waiting if not w.future.done())

    async def _run(self) -> None:
        while True:
            self._waiting = [w for w in self._waiting if not w.future.done()]  # cancelled callers
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # Wait for the batch to fill, at most until the oldest item has waited wait_timeout_s.
            deadline = min(w.enqueued for w in self._waiting) + self.wait_timeout_s
            while self._queued_items() < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._execute(batch)

    def _take_batch(self) -> list[_Waiting]:
        """The next batch: by effective priority, then arrival; stops at the first item that does
        not fit (no overtaking by size), except that an oversized first item runs alone."""
        now = time.monotonic()
        live = [w for w in self._waiting if not w.future.done()]
        live.sort(key=lambda w: (w.effective_rank(now, self.aging_s), w.enqueued, w.seq))
        batch: list[_Waiting] = []
        total = 0
        for waiting in live:
            if batch and total + waiting.size > self.max_batch_size:
                break
            batch.append(waiting)
            total += waiting.size
            if total >= self.max_batch_size:
                break
        chosen = {id(w) for w in batch}
        self._waiting = [w for w in live if id(w) not in chosen]
        return batch

    async def _execute(self, batch: list[_Waiting]) -> None:
        started = time.monotonic()
        try:
            results = await self.handler([w.payload for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch handler returned {len(results)} results for {len(batch)} requests")
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the failure; the loop goes on
            log.warning("%s batch of %d failed: %s", self.name, len(batch), exc)
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        compute_ms = (time.monotonic() - started) * 1000.0
        size = sum(w.size for w in batch)
        for waiting, value in zip(batch, results):
            if not waiting.future.done():
                waiting.future.set_result(
                    Batched(
                        value, LEVELS[waiting.rank], (started - waiting.enqueued) * 1000.0, compute_ms, size, len(batch)
                    )
                )

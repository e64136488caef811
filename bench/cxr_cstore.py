"""The C-STORE side of `preread bench cxr`: studies sent to the service's DICOM listener by pynetdicom
AEs (calling AE DEMOSITE), and the time from each C-STORE until its study's row leaves ``received`` /
``processing`` (``ai_read`` counts as read; anything else is a failure).

The database is watched from a thread started before the first C-STORE (``ReadWatcher``), so a read
is timed when it happens. (It was watched only after the last study had been sent: at 1 study/s
the first of 10 studies was seen ~9 s late, which put the p95 at ~8.6 s whatever the service did.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation
from sqlalchemy import select

from bench.harness import percentile
from serving.store.db import Database
from serving.store.schema import Study

POLL_S = 0.05  # how often the watcher looks for finished studies (one query for all of them)
UNFINISHED = ("received", "processing")


def store_worker(port: int, ae_title: str, studies: list, results: dict, lock: threading.Lock) -> None:
    """Send ``studies`` over one association; note in ``results`` when each C-STORE started and ended."""
    ae = AE(ae_title="DEMOSITE")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        with lock:
            for ds in studies:
                results[ds.StudyInstanceUID] = {"sent": None, "status": "association refused"}
        return
    try:
        for ds in studies:
            t0 = time.perf_counter()
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None) if status else None
            with lock:
                results[ds.StudyInstanceUID] = {"sent": t0, "stored": time.perf_counter(), "status": code}
    finally:
        assoc.release()


class ReadWatcher:
    """Notes, in its own thread, when each of ``study_uids`` leaves ``received``/``processing``."""

    def __init__(self, db: Database, study_uids: list[str], timeout_s: float):
        self.db = db
        self.pending = set(study_uids)
        self.done_at: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.timeout_s = timeout_s
        self._thread = threading.Thread(target=self._watch, name="bench-read-watcher", daemon=True)

    def __enter__(self) -> ReadWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()

    def _finished(self) -> dict[str, str]:
        with self.db.session() as session:
            rows = session.execute(
                select(Study.study_uid, Study.status).where(Study.study_uid.in_(list(self.pending)))
            ).all()
        return {uid: status for uid, status in rows if status not in UNFINISHED}

    def _watch(self) -> None:
        deadline = time.perf_counter() + self.timeout_s
        while self.pending and time.perf_counter() < deadline:
            now = time.perf_counter()
            for uid, status in self._finished().items():
                self.done_at[uid], self.status[uid] = now, status
                self.pending.discard(uid)
            if self.pending:
                time.sleep(POLL_S)

    def latencies_ms(self, results: dict[str, dict[str, Any]]) -> list[float]:
        """C-STORE start → read seen, for the studies read."""
        return [
            (self.done_at[uid] - results[uid]["sent"]) * 1000.0
            for uid in self.read()
            if results.get(uid, {}).get("sent")
        ]

    def read(self) -> list[str]:
        return [uid for uid, status in self.status.items() if status == "ai_read"]


def _start(cfg, studies: list, results: dict, lock: threading.Lock) -> threading.Thread:
    thread = threading.Thread(
        target=store_worker, args=(cfg.dicom.port, cfg.dicom.ae_title, studies, results, lock), daemon=True
    )
    thread.start()
    return thread


def dicom_load(cfg, db: Database, studies: list, concurrency: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send ``studies`` over ``concurrency`` associations at once (a burst); wait until each is read."""
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    started = time.perf_counter()
    with ReadWatcher(db, [ds.StudyInstanceUID for ds in studies], timeout_s) as watcher:
        threads = [
            _start(cfg, studies[i::concurrency], results, lock) for i in range(concurrency) if studies[i::concurrency]
        ]
    for thread in threads:
        thread.join(timeout=5)
    elapsed = max(watcher.done_at.values(), default=time.perf_counter()) - started
    latencies = watcher.latencies_ms(results)
    read = len(watcher.read())
    store_ms = [(r["stored"] - r["sent"]) * 1000.0 for r in results.values() if r.get("sent")]
    return {
        "concurrency": concurrency,
        "studies": len(studies),
        "ai_read": read,
        "failures": len(studies) - read,
        "timed_out": len(watcher.pending),
        "other_statuses": sorted({s for s in watcher.status.values() if s != "ai_read"}),
        "per_s": read / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "c_store_p50_ms": percentile(store_ms, 50),
    }


def dicom_paced(cfg, db: Database, studies: list, rate_per_s: float, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send ``studies`` one association each at ``rate_per_s`` (open loop, like clinics sending one
    film at a time); latency from each C-STORE until its row leaves ``received``/``processing``."""
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    threads = []
    with ReadWatcher(db, [ds.StudyInstanceUID for ds in studies], timeout_s + len(studies) / rate_per_s) as watcher:
        started = time.perf_counter()
        for index, ds in enumerate(studies):
            delay = started + index / rate_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            threads.append(_start(cfg, [ds], results, lock))
    for thread in threads:
        thread.join(timeout=5)
    latencies = watcher.latencies_ms(results)
    read = len(watcher.read())
    return {
        "rate_per_s": rate_per_s,
        "studies": len(studies),
        "ai_read": read,
        "failures": len(studies) - read,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }

"""The dispatcher: the ONE reader of the work queue, for ECGs and DICOM images alike. Due studies →
routing → model read → results (SR + heatmap SC) → worklist.

An asyncio loop in every ingress replica. It leases (serving/store/work.py) the studies that are
due: image studies in status ``received`` whose last instance arrived at least
``study_stable_seconds`` ago, ECGs left ``received`` by a worker that died (a restart's recovery
is this same sweep), and ``ai_failed`` studies whose retry time has come; a lease not renewed for
``lease_seconds`` is stale (its replica or the whole service died) and is taken over. It renews the
leases of what this replica is reading. Arrivals wake it (``wake``): the work queue calls it when
an object is stored, and the C-STORE SCP hands it the ECGs it accepted (``read_now``).

An ECG is read from its stored original (serving/ingest/ecg.py). An image study is routed
(configs/routing.yaml): no rule → ``no_ai_read`` (listed, never dropped); a rule → the chosen
instance is read by that model (a DeploymentHandle on Ray, an in-process reader otherwise) with the
study's priority (serving/priority.py), the results are stored through the store
(serving/results/outbound.py), the read is recorded exactly once (status ai_read → worklist), and
the results are optionally C-STOREd to the configured PACS (serving/results/pacs.py). Any failure →
ai_failed with the reason and the next attempt; the study stays listed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pydicom

from datasets.imaging import read_dicom_image
from datasets.imaging.record import ImageRecord
from models.read import PreRead
from serving import metrics
from serving.priority import dicom_priority, highest, request_priority
from serving.reading.routing import Router
from serving.results.outbound import EncodedResult, encoded_results, source_header, store_encoded, warm_worker
from serving.results.pacs import forward_results
from serving.services import Services
from serving.store import audit
from serving.store.queries import set_no_ai_read
from serving.store.schema import Study

log = logging.getLogger("preread.dicom.dispatch")

ImageReadFn = Callable[[ImageRecord], Awaitable[PreRead]]


class Dispatcher:
    """Reads the due studies of the work queue (module docstring).

    ``results_worker``: build and encode the SR and SC (and put the heatmap on the image) in a worker
    process instead of a thread of this one. That is ~1/4 of the ingress's CPU per chest X-ray, held
    under the GIL that the C-STORE SCP, the event loop and the database calls share; the service on
    Ray turns it on (serving/reading/runtime.py), the in-process app and tests keep the thread.
    """

    def __init__(
        self, services: Services, router: Router, readers: dict[str, ImageReadFn], results_worker: bool = False
    ):
        self.svc = services
        self.cfg = services.config
        self.router = router
        self.readers = readers
        self.queue = services.ecg.queue
        self._wake: asyncio.Event | None = None  # created on the running loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._asked: set[asyncio.Task] = set()  # studies handed over by read_now
        self.results_worker = results_worker
        self._results_pool: ProcessPoolExecutor | None = None

    # --- loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep up to ``dicom.max_in_flight`` due studies being read. A study starts as soon as a
        slot frees up rather than in rounds (``tick``), so one slow study (Grad-CAM, a large SR) does
        not hold up the studies claimed with it."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.queue.on_arrival(self.wake)
        log.info(
            "dispatcher running (stable after %.1f s, up to %d studies at once, models %s)",
            self.cfg.dicom.study_stable_seconds,
            self.cfg.dicom.max_in_flight,
            sorted(self.readers),
        )
        in_flight: set[asyncio.Task] = set()
        if self.results_worker:
            self._pool().submit(warm_worker)  # start it now rather than with the first study
        try:
            while not self._stopped:
                try:
                    await self._top_up(in_flight)
                except Exception:  # a bad round must not end the loop
                    log.exception("dispatcher tick failed")
                await self._wait(in_flight)
        except asyncio.CancelledError:
            for task in in_flight | self._asked:
                task.cancel()  # their leases lapse and the studies are taken over (serving/store/work.py)
            raise
        if in_flight:  # stopped: finish what was started
            await asyncio.gather(*in_flight, return_exceptions=True)

    def wake(self, modality: str | None = None) -> None:
        """An object arrived (any thread): sweep when it can be due — at once for an ECG, after
        ``study_stable_seconds`` for an image study (its other instances may still be coming)."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        delay = 0.0 if modality == "ECG" else self.cfg.dicom.study_stable_seconds
        loop.call_soon_threadsafe(loop.call_later, delay, event.set)

    def read_now(self, study_uid: str) -> None:
        """Read a study this worker leased at arrival (an ECG the SCP accepted), from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # the lease lapses and the sweep reads it
        loop.call_soon_threadsafe(self._start_asked, study_uid)

    def _start_asked(self, study_uid: str) -> None:
        task = asyncio.ensure_future(self.process(study_uid))
        self._asked.add(task)
        task.add_done_callback(self._asked.discard)

    async def _lease(self, room: int) -> list[str]:
        """Renew this worker's leases, give up on dead ones, then lease up to ``room`` due studies."""
        queue = self.queue
        await asyncio.to_thread(queue.renew)
        await asyncio.to_thread(queue.give_up_on_dead_leases)
        return await asyncio.to_thread(queue.claim_due, room) if room > 0 else []

    async def _flush_audit(self) -> None:
        await asyncio.to_thread(audit.flush_views, self.svc.db)

    async def _top_up(self, in_flight: set[asyncio.Task]) -> int:
        """Lease due studies into the free slots and start reading them."""
        claimed = await self._lease(self.cfg.dicom.max_in_flight - len(in_flight))
        for study_uid in claimed:
            task = asyncio.create_task(self.process(study_uid))
            in_flight.add(task)
            task.add_done_callback(self._finished(in_flight, study_uid))
        await self._flush_audit()
        return len(claimed)

    @staticmethod
    def _finished(in_flight: set[asyncio.Task], study_uid: str) -> Callable[[asyncio.Task], None]:
        def done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:  # process() records its own failures
                log.error(
                    "reading study %s failed outside its own error handling", study_uid, exc_info=task.exception()
                )

        return done

    async def _wait(self, in_flight: set[asyncio.Task]) -> None:
        """Until an arrival wakes us, a study finishes (a slot is free) or ``poll_seconds`` pass."""
        assert self._wake is not None
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {wake, *in_flight}, timeout=self.cfg.dicom.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            try:
                wake.cancel()
            except RuntimeError:  # the loop is already closed (a replica shutting down): nothing to cancel on
                pass
        self._wake.clear()

    def stop(self) -> None:
        self._stopped = True
        pool, self._results_pool = self._results_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        """The results worker (one process, started on first use; ``spawn``: this process has threads)."""
        if self._results_pool is None:
            self._results_pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._results_pool

    async def _encode_results(self, source: pydicom.Dataset, read: PreRead, record: ImageRecord) -> list[EncodedResult]:
        """SR + SC of ``read`` encoded, in the results worker when there is one (see the class)."""
        args = (source_header(source), read, record if read.cam_maps else None, self.cfg.locale)
        if not self.results_worker:
            return await asyncio.to_thread(encoded_results, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), encoded_results, *args)
        except BrokenProcessPool:
            self._results_pool = None  # the worker died: a new one for the next study; this one is retried
            raise

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def tick(self) -> int:
        """One round: lease up to 16 due studies and read them all (tests and tools; the running
        service uses ``run``)."""
        claimed = await self._lease(16)
        # Concurrently, so the model deployment can batch studies (one at a time it never would);
        # each process() catches its own failures and records them on the study.
        await asyncio.gather(*(self.process(study_uid) for study_uid in claimed))
        await self._flush_audit()
        return len(claimed)

    # --- one study ------------------------------------------------------------------------------
    async def process(self, study_uid: str) -> str:
        """Read one study this worker has leased."""
        db, queue = self.svc.db, self.queue
        started = time.perf_counter()
        queue.hold(study_uid)
        try:
            study = await asyncio.to_thread(db.get_study, study_uid)
            if study is None or study.read_at is not None or study.no_ai:
                await asyncio.to_thread(queue.release, study_uid)
                return "skipped"
            if study.modality == "ECG":
                with request_priority(study.priority):  # [priority] as it arrived (e.g. a C-STORE HIGH)
                    read = await self.svc.ecg.read_stored(study)
                return "ai_read" if read is not None else "ai_failed"
            return await self._read_image(study, started)
        except Exception as exc:
            log.warning("AI read of study %s failed: %s: %s", study_uid, type(exc).__name__, exc, exc_info=True)
            metrics.AI_FAILURES.labels("DICOM").inc()
            try:
                await asyncio.to_thread(queue.record_failure, study_uid, f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record the failure of %s", study_uid)
            return "ai_failed"
        finally:
            queue.drop(study_uid)

    async def _read_image(self, study: Study, started: float) -> str:
        db, study_uid = self.svc.db, study.study_uid
        route = self.router.route(study.instances)
        if route.rule is None:
            await asyncio.to_thread(set_no_ai_read, db, study_uid, route.reason)
            return "no_ai_read"
        read_fn = self.readers.get(route.model)
        if read_fn is None:
            await asyncio.to_thread(
                set_no_ai_read, db, study_uid, f"{route.reason}, but model {route.model!r} is not served here"
            )
            return "no_ai_read"
        instance = route.instance
        data = await asyncio.to_thread(self.svc.store.get, instance.storage_key)
        ds = pydicom.dcmread(io.BytesIO(data))
        record = await asyncio.to_thread(read_dicom_image, ds)
        record.site = study.site  # the site's own operating points, where the card has them
        # [priority] from the object and the priority the study arrived with (serving/priority.py)
        with request_priority(highest(dicom_priority(ds), study.priority)):
            read = await read_fn(record)
        # A replica leaves the heatmap pictures to us (read.cam_maps): we hold the image.
        encoded = await self._encode_results(ds, read, record)
        results = await asyncio.to_thread(store_encoded, db, self.svc.store, study, encoded)
        read.source = {
            "sop_instance_uid": instance.sop_instance_uid,
            "series_uid": instance.series_uid,
            "rule": route.rule.name,
        }
        read.results = results
        if not await asyncio.to_thread(self.queue.record_pre_read, study_uid, read):
            return "skipped"  # another worker recorded this study's read first
        metrics.AI_READS.labels(str(study.modality), read.triage.level.value).inc()
        metrics.READ_SECONDS.labels(str(study.modality)).observe(time.perf_counter() - started)
        if self.cfg.dicom.results_destination is not None:
            await asyncio.to_thread(forward_results, self.cfg, db, self.svc.store, study_uid, results)
        return "ai_read"

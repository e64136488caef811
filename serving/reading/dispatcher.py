"""The dispatcher: the work queue's sweeper. Due studies → routing → model read → SR + heatmap SC → worklist.

An asyncio loop in every ingress replica. Each tick it leases (serving/store/work.py) the studies
that are due: image studies in status ``received`` whose last instance arrived at least
``study_stable_seconds`` ago, ECGs left ``received`` by a worker that died, and ``ai_failed``
studies whose retry time has come; a lease not renewed for ``lease_seconds`` is stale (its replica
or the whole service died) and is taken over. It renews the leases of what this replica is reading.
An ECG is read from its stored original (serving/ecg_workflow.py). An image study is routed (configs/routing.yaml): no rule → ``no_ai_read`` (listed, never dropped); a rule →
the chosen instance is read by that model (a DeploymentHandle on Ray, an in-process reader
otherwise), then the SR (TID 1500) and the heatmap Secondary Capture are stored as instances of
the same study (role ai_sr / ai_sc, source "ai": WADO-RS serves them; their UIDs derive from the
source instance, so a read computed twice stores them once), the read is recorded exactly once
(status ai_read → worklist), and the results are optionally C-STOREd to the configured PACS. Any
failure → ai_failed with the reason and the next attempt; the study stays listed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from typing import Any, Awaitable, Callable

import numpy as np
import pydicom

from datasets.imaging import read_dicom_image
from datasets.imaging.record import ImageRecord
from serving import metrics
from serving.dicom.ingest import DicomIngest, encode
from serving.dicom.queries import set_no_ai_read
from serving.dicom.routing import Router
from serving.ecg_workflow import uid_from_digest
from serving.priority import COMMAND_PRIORITY, dicom_priority, request_priority

log = logging.getLogger("preread.dicom.dispatch")

ImageReadFn = Callable[[ImageRecord], Awaitable[dict[str, Any]]]


# Patient and study attributes the SR copies from its evidence (highdicom reads each one): Type 2,
# so "present, possibly empty" — a source that leaves one out gets it empty in the SR, instead of a
# failed AI read.
_SR_TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                         "AccessionNumber", "StudyDate", "StudyTime", "ReferringPhysicianName")


def _plain(value: Any) -> Any:
    """JSON-safe copy of a read (arrays dropped: they live in the SC, not in the row)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, np.ndarray)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value if not isinstance(v, np.ndarray)]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Dispatcher:
    def __init__(self, services: Any, router: Router, readers: dict[str, ImageReadFn], ingest: DicomIngest | None = None):
        self.svc = services
        self.cfg = services.config
        self.router = router
        self.readers = readers
        self.ingest = ingest or DicomIngest.from_services(services)
        self.queue = services.ecg.queue
        self._wake: asyncio.Event | None = None  # created on the running loop
        self._stopped = False
        self.processed = 0

    # --- loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep up to ``dicom.max_in_flight`` due studies being read. A study starts as soon as a
        slot frees up rather than in rounds (``tick``), so one slow study (Grad-CAM, a large SR) does
        not hold up the studies claimed with it."""
        self._wake = asyncio.Event()
        log.info("dispatcher running (stable after %.1f s, up to %d studies at once, models %s)",
                 self.cfg.dicom.study_stable_seconds, self.cfg.dicom.max_in_flight, sorted(self.readers))
        in_flight: set[asyncio.Task] = set()
        try:
            while not self._stopped:
                try:
                    await self._top_up(in_flight)
                except Exception:  # a bad round must not end the loop
                    log.exception("dispatcher tick failed")
                await self._wait(in_flight)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()  # their leases lapse and the studies are taken over (serving/store/work.py)
            raise
        if in_flight:  # stopped: finish what was started
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _lease(self, room: int) -> list[str]:
        """Renew this worker's leases, give up on dead ones, then lease up to ``room`` due studies."""
        queue = self.queue
        await asyncio.to_thread(queue.renew)
        await asyncio.to_thread(queue.give_up_on_dead_leases)
        return await asyncio.to_thread(queue.claim_due, room) if room > 0 else []

    async def _flush_audit(self) -> None:
        from serving.worklist import audit  # noqa: PLC0415

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
    def _finished(in_flight: set[asyncio.Task], study_uid: str):
        def done(task: asyncio.Task) -> None:
            in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:  # process() records its own failures
                log.error("reading study %s failed outside its own error handling", study_uid,
                          exc_info=task.exception())
        return done

    async def _wait(self, in_flight: set[asyncio.Task]) -> None:
        """Until an arrival wakes us, a study finishes (a slot is free) or ``poll_seconds`` pass."""
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({wake, *in_flight}, timeout=self.cfg.dicom.poll_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            try:
                wake.cancel()
            except RuntimeError:  # the loop is already closed (a replica shutting down): nothing to cancel on
                pass
        self._wake.clear()

    def stop(self) -> None:
        self._stopped = True

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
                read = await self.svc.ecg.read_stored(study)
                return "ai_read" if read is not None else "ai_failed"
            route = self.router.route(study.instances)
            if route.rule is None:
                await asyncio.to_thread(set_no_ai_read, db, study_uid, route.reason)
                return "no_ai_read"
            read_fn = self.readers.get(route.model)
            if read_fn is None:
                await asyncio.to_thread(set_no_ai_read, db, study_uid,
                                        f"{route.reason}, but model {route.model!r} is not served here")
                return "no_ai_read"
            instance = route.instance
            data = await asyncio.to_thread(self.svc.store.get, instance.storage_key)
            ds = pydicom.dcmread(io.BytesIO(data))
            record = await asyncio.to_thread(read_dicom_image, ds)
            record.site = study.site  # the site's own operating points, where the card has them
            # [priority] from the object and its C-STORE request (serving/priority.py)
            with request_priority(dicom_priority(ds, COMMAND_PRIORITY.pop(study_uid))):
                read = await read_fn(record)
            results = await asyncio.to_thread(self._store_results, study, ds, read)
            summary = _plain({k: v for k, v in read.items() if k != "heatmaps"})
            summary["heatmaps"] = [{k: v for k, v in h.items() if k in ("code", "name")} for h in read.get("heatmaps", [])]
            summary["source"] = {"sop_instance_uid": instance.sop_instance_uid, "series_uid": instance.series_uid,
                                 "rule": route.rule.name}
            summary["results"] = results
            triage, model = read["triage"], read["model"]
            recorded = await asyncio.to_thread(queue.record_read, study_uid, summary, triage["level"],
                                               float(triage["score"]), str(model["name"]), str(model["version"]))
            if not recorded:
                return "skipped"  # another worker recorded this study's read first
            self.processed += 1
            metrics.AI_READS.labels(str(study.modality), triage["level"]).inc()
            metrics.READ_SECONDS.labels(str(study.modality)).observe(time.perf_counter() - started)
            if self.cfg.dicom.results_destination is not None:
                await asyncio.to_thread(self._forward, study_uid, results)
            return "ai_read"
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

    def _store_results(self, study: Any, source: pydicom.Dataset, read: dict[str, Any]) -> dict[str, Any]:
        from serving.results import build_ai_sr, build_heatmap_sc

        model = read["model"]
        source_header = pydicom.Dataset(source)  # shallow copy without pixels for the SR evidence
        source_header.file_meta = source.file_meta
        if "PixelData" in source_header:
            del source_header.PixelData
        for keyword in _SR_TYPE2_FROM_SOURCE:  # senders omit Type 2 attributes; empty is what they mean
            if keyword not in source_header:
                setattr(source_header, keyword, "")
        # UIDs derived from the source instance and the model: a read computed twice (a lease taken
        # over from a slow worker) stores the same objects, which the store keeps once.
        def uid(role: str, part: str) -> str:
            return uid_from_digest(f"{source.SOPInstanceUID}:{model.get('name')}:{model.get('version')}:{role}", part)

        sr = build_ai_sr([source_header], read["findings"], model, read.get("triage"),
                         series_instance_uid=uid("ai_sr", "series"), sop_instance_uid=uid("ai_sr", "instance"))
        objects = [("ai_sr", encode(sr))]
        heatmaps = read.get("heatmaps") or []
        if heatmaps and heatmaps[0].get("overlay_rgb") is not None:
            top = heatmaps[0]
            probability = next((f["probability"] for f in read["findings"] if f["code"] == top.get("code")), None)
            label = f"{top.get('name') or top.get('code')}" + (f" {probability:.2f}" if probability is not None else "")
            sc = build_heatmap_sc(source_header, np.asarray(top["overlay_rgb"], dtype=np.uint8), model, finding=label,
                                  series_instance_uid=uid("ai_sc", "series"), sop_instance_uid=uid("ai_sc", "instance"))
            objects.append(("ai_sc", encode(sc)))
        out: dict[str, Any] = {}
        for role, data in objects:
            accepted = self.ingest.accept(data, study.site, source="ai", sender="preread", role=role)
            out[role] = {"sop_instance_uid": accepted.sop_instance_uid, "series_uid": accepted.series_uid,
                         "wado": f"/dicomweb/studies/{accepted.study_uid}/series/{accepted.series_uid}"
                                 f"/instances/{accepted.sop_instance_uid}"}
        return out

    def _forward(self, study_uid: str, results: dict[str, Any]) -> None:
        from serving.dicom.scp import send_to_pacs

        dest = self.cfg.dicom.results_destination
        objects = []
        for item in results.values():
            found = self.svc.db.find_instance(item["sop_instance_uid"])
            if found is not None:
                objects.append(self.svc.store.get(found[1].storage_key))
        try:
            sent = send_to_pacs(objects, dest.ae_title, dest.host, dest.port, self.cfg.dicom.ae_title, dest.timeout_s)
        except Exception as exc:
            log.warning("could not send the results of %s to %s: %s", study_uid, dest.ae_title, exc)
            return
        for sop, status, note in sent:
            if status != 0:
                log.warning("PACS %s refused %s of study %s: status %s %s", dest.ae_title, sop, study_uid, status, note)


class BackgroundLoop:
    """An event loop in a daemon thread, for running the dispatcher (and ECG reads the SCP
    schedules) where no server loop is at hand (in-process app, scripts)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="preread-dicom-loop", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class DicomRuntime:
    """SCP + dispatcher for one replica. ``start(loop)`` on the replica's event loop (Ray ingress)
    or on a BackgroundLoop (in-process)."""

    def __init__(self, services: Any, readers: dict[str, ImageReadFn]):
        from serving.dicom.scp import StorageScp

        cfg = services.config
        self.services = services
        self.ingest = DicomIngest.from_services(services)
        self.dispatcher = Dispatcher(services, Router.from_file(cfg.routing_path()), readers, self.ingest)
        self.scp = StorageScp.from_config(cfg, self.ingest, on_ecg=self._on_ecg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task = None
        self._own_loop: BackgroundLoop | None = None

    def _on_ecg(self, study_uid: str, record: Any) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self.services.ecg.read(study_uid, record), self.loop)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> "DicomRuntime":
        if loop is None:
            self._own_loop = BackgroundLoop()
            loop = self._own_loop.loop
        self.loop = loop
        self._task = asyncio.run_coroutine_threadsafe(self.dispatcher.run(), loop) if self._own_loop else loop.create_task(self.dispatcher.run())
        if self.services.config.dicom.enabled:
            threading.Thread(target=self._bind, name="preread-scp-bind", daemon=True).start()
        return self

    def _bind(self, attempts: int = 60, wait_s: float = 2.0) -> None:
        """Start the SCP; while another process holds the port (a replica being replaced, or
        another ingress replica) retry for a while, then give up loudly: HTTP still works here."""
        for attempt in range(attempts):
            if self.dispatcher._stopped:
                return
            try:
                self.scp.start()
                return
            except OSError as exc:
                if attempt == 0:
                    log.warning("DICOM port %s:%d busy (%s): retrying", self.scp.host, self.scp.port, exc)
                time.sleep(wait_s)
        log.error("DICOM SCP not started on %s:%d: port stays busy", self.scp.host, self.scp.port)

    def stop(self) -> None:
        self.dispatcher.stop()
        self.scp.stop()
        if self._own_loop is not None:
            self._own_loop.stop()


def start_local_dicom(services: Any, cxr_reader: Any | None = None) -> DicomRuntime:
    """The DICOM side of the in-process app (serving/local.py style): SCP + dispatcher on a
    background loop; ``cxr_reader`` is a CxrPreReader (or anything with ``read_batch``)."""
    readers: dict[str, ImageReadFn] = {}
    if cxr_reader is not None:
        async def read_cxr(record: ImageRecord) -> dict[str, Any]:
            return (await asyncio.to_thread(cxr_reader.read_batch, [record]))[0]

        readers["cxr"] = read_cxr
        services.models_ready["cxr"] = True
    return DicomRuntime(services, readers).start()

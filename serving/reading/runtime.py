"""Where the dispatcher and the C-STORE SCP run in one replica: ``DicomRuntime.start(loop)`` on the
ingress replica's event loop (Ray), or on a ``BackgroundLoop`` (in-process app, scripts, tests)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

from datasets.imaging.record import ImageRecord
from models.read import PreRead
from serving.ingest.scp import StorageScp
from serving.reading.dispatcher import Dispatcher, ImageReadFn
from serving.reading.routing import Router
from serving.services import Services

log = logging.getLogger("preread.dicom.dispatch")


class BackgroundLoop:
    """An event loop in a daemon thread, for running the dispatcher where no server loop is at
    hand (in-process app, scripts)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="preread-dicom-loop", daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel what still runs on the loop and wait until it has ended, then stop and close the
        loop. Stopping the loop alone would leave the dispatcher's task pending on a dead loop: its
        ``except CancelledError`` (which cancels the in-flight reads) never ran, and the garbage
        collector later reported "Task was destroyed but it is pending"."""
        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), self.loop).result(timeout_s)
            except TimeoutError:
                log.warning("tasks on the DICOM loop did not end within %.0f s of being cancelled", timeout_s)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=timeout_s)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


async def _cancel_all_tasks() -> None:
    """Cancel every other task of the running loop and wait for each to finish its clean-up."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class DicomRuntime:
    """SCP + dispatcher for one replica. The SCP wakes the dispatcher on each stored object and
    hands it the ECGs it accepted (leased to this worker at arrival) to read at once."""

    def __init__(self, services: Services, readers: dict[str, ImageReadFn], results_worker: bool = True):
        cfg = services.config
        self.services = services
        # results_worker: the SR/SC in a worker process (Dispatcher); the in-process app keeps a thread.
        self.dispatcher = Dispatcher(services, Router.from_file(cfg.routing_path()), readers, results_worker)
        self.scp = StorageScp.from_config(cfg, services.dicom, on_ecg=self._on_ecg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | Future | None = None
        self._own_loop: BackgroundLoop | None = None

    def _on_ecg(self, study_uid: str) -> None:
        self.dispatcher.read_now(study_uid)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> DicomRuntime:
        if loop is None:
            self._own_loop = BackgroundLoop()
            loop = self._own_loop.loop
        self.loop = loop
        if self._own_loop:
            self._task = asyncio.run_coroutine_threadsafe(self.dispatcher.run(), loop)
        else:
            self._task = loop.create_task(self.dispatcher.run())
        if self.services.config.dicom.enabled:
            threading.Thread(target=self._bind, name="preread-scp-bind", daemon=True).start()
        return self

    def _bind(self, attempts: int = 60, wait_s: float = 2.0) -> None:
        """Start the SCP; while another process holds the port (a replica being replaced, or
        another ingress replica) retry for a while, then give up loudly: HTTP still works here."""
        for attempt in range(attempts):
            if self.dispatcher.stopped:
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
            # The dispatcher's task is cancelled and awaited: its in-flight reads are cancelled, their
            # leases lapse and another worker takes them over (serving/store/work.py).
            self._own_loop.stop()


def start_local_dicom(services: Services, cxr_reader: object | None = None) -> DicomRuntime:
    """The DICOM side of the in-process app (serving/local.py style): SCP + dispatcher on a
    background loop; ``cxr_reader`` is a CxrPreReader (or anything with ``read_batch``)."""
    readers: dict[str, ImageReadFn] = {}
    if cxr_reader is not None:
        read_batch = cxr_reader.read_batch  # type: ignore[attr-defined]

        async def read_cxr(record: ImageRecord) -> PreRead:
            return (await asyncio.to_thread(read_batch, [record]))[0]

        readers["cxr"] = read_cxr
        services.models_ready["cxr"] = True
    return DicomRuntime(services, readers, results_worker=False).start()

"""The sender running: intake from the watch folder, the C-STORE listener and the command line;
one upload loop (one request at a time: a thin link gains nothing from parallel uploads); one
results loop. Each is a thread; all state is in the queue, so a kill at any moment loses nothing."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx

from preread.send.accept import Intake, Verdict
from preread.send.config import SendConfig
from preread.send.listener import CStoreListener
from preread.send.queue import Item, SendQueue
from preread.send.results import Alert, Notifier, ResultsFetcher
from preread.send.upload import Outcome, Uploader, backoff_s, http_client
from preread.send.upload import Verdict as Sent
from preread.send.watch import FolderWatcher
from preread.send.wire import TokenBucket

log = logging.getLogger("preread.send")
DONE_STATUSES = {"no_ai_read", "ai_failed"}  # stored, listed for a doctor, no AI read will come


class Sender:
    def __init__(self, cfg: SendConfig, bell: bool = True):
        self.cfg = cfg
        for folder in (cfg.state_dir, cfg.results_dir, cfg.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.queue = SendQueue(cfg.database_path, cfg.queue_dir, int(cfg.disk_reserve_mb * 2**20))
        self.intake = Intake(self.queue, cfg.quarantine_dir)
        self.client = http_client(cfg)
        self.uploader = Uploader(cfg, self.client, TokenBucket.kbit(cfg.bandwidth_kbit_s))
        self.notifier = Notifier(cfg.notifications_file, bell)
        self.results = ResultsFetcher(cfg, self.queue, self.client, self.notifier)
        self.stop_event = threading.Event()
        self.link_failures = 0
        self.link_state = "not tried yet"
        self._alerted: set[str] = set()

    # --- intake ---------------------------------------------------------------------------------
    def add_paths(self, paths: list[Path]) -> list[tuple[Path, Verdict]]:
        """Queue files (and the files of folders) named on the command line; the originals stay."""
        out = []
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                out.append((file, self.intake.take(file.read_bytes(), file.name, "command-line")))
        return out

    # --- uploading ------------------------------------------------------------------------------
    def upload_once(self) -> Item | None:
        """Send the next due item, if any; returns it."""
        item = self.queue.next_due()
        if item is None:
            return None
        try:
            data = self.queue.read_bytes(item)
        except FileNotFoundError:
            self.queue.mark_refused(item, "the queued copy is missing from the queue folder")
            log.error("item %s: queued copy missing", item.key)
            return item
        self.handle(item, self.uploader.send(item, data))
        return item

    def handle(self, item: Item, outcome: Outcome) -> None:
        if outcome.verdict is Sent.SENT:
            self.link_failures, self.link_state = 0, "up"
            self.queue.mark_sent(item, outcome.study_uid, outcome.wire_bytes)
            log.info(
                "sent %s → study %s (%d bytes on the wire for %d)",
                item.label,
                outcome.study_uid,
                outcome.wire_bytes,
                item.size_bytes,
            )
            if outcome.read:
                self.results.record_read(self.queue.study(outcome.study_uid), outcome.read)
            return
        if outcome.verdict is Sent.REFUSED:
            self.link_state = "up"
            self.queue.mark_refused(item, outcome.reason)
            self.notifier.notify(
                Alert(item.study_uid or item.key, item.label, f"refused by the service, not retried: {outcome.reason}")
            )
            return
        self.link_failures += 1
        delay = outcome.retry_after_s or backoff_s(self.link_failures, self.cfg.retry.initial_s, self.cfg.retry.max_s)
        self.queue.mark_retry(item, outcome.reason, delay)
        if outcome.verdict is Sent.TOKEN:
            self.link_state = "token problem"
            if outcome.reason not in self._alerted:
                self._alerted.add(outcome.reason)
                self.notifier.notify(Alert("-", "token", f"{outcome.reason}; studies are kept and retried"))
        else:
            self.link_state = f"down ({outcome.reason[:60]})"
            log.info("%s not sent: %s; retry in %.1f s", item.label, outcome.reason, delay)
        self.stop_event.wait(delay)  # the link is the problem, not the item: everything waits

    def learn_server(self) -> None:
        """Which request encodings the service inflates (its Accept-Encoding), before the first upload."""
        try:
            self.uploader.learn_encodings(self.client.get("/healthz", timeout=10))
        except httpx.HTTPError as exc:  # the link is down: uploads learn it from their first answer instead
            log.info("service not reachable yet (%s)", type(exc).__name__)

    def _upload_loop(self) -> None:
        self.learn_server()
        while not self.stop_event.is_set():
            try:
                if self.upload_once() is None:
                    wake = self.queue.next_wake()
                    self.stop_event.wait(min(1.0, max(0.05, (wake or time.time() + 1) - time.time())))
            except Exception:  # keep sending whatever one item did; the log says what
                log.exception("upload loop")
                self.stop_event.wait(1.0)

    def _results_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.results.poll_due()
            except Exception:
                log.exception("results loop")
            self.stop_event.wait(min(1.0, self.cfg.results.poll_s / 2))

    def _watch_loop(self, watcher: FolderWatcher) -> None:
        while not self.stop_event.is_set():
            try:
                watcher.scan()
            except Exception:
                log.exception("watch folder")
            self.stop_event.wait(self.cfg.watch_poll_s)

    # --- the whole ------------------------------------------------------------------------------
    def done(self) -> bool:
        """Nothing left to send and every sent study has its AI read (or will never get one)."""
        if self.queue.counts().get("queued"):
            return False
        return all(s["read_file"] or s["server_status"] in DONE_STATUSES for s in self.queue.studies())

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._upload_loop, name="send-upload", daemon=True),
            threading.Thread(target=self._results_loop, name="send-results", daemon=True),
        ]
        if self.cfg.watch_folder is not None:
            self.cfg.watch_folder.mkdir(parents=True, exist_ok=True)
            watcher = FolderWatcher(self.cfg.watch_folder, self.intake)
            threads.append(threading.Thread(target=self._watch_loop, args=(watcher,), name="send-watch", daemon=True))
        self.listener = CStoreListener(self.cfg.listener, self.intake).start() if self.cfg.listener.enabled else None
        for thread in threads:
            thread.start()
        return threads

    def stop(self, threads: list[threading.Thread]) -> None:
        self.stop_event.set()
        if self.listener is not None:
            self.listener.stop()
        for thread in threads:
            thread.join(timeout=10)
        self.client.close()
        self.queue.close()

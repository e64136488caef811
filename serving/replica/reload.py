"""Follow a registry alias while serving: when `preread models promote` moves `NAME@champion`,
replicas load the new version and switch over between batches, without a restart.

A daemon thread per replica asks the registry which version the reference points at every
``interval_s`` seconds — one cheap call (an alias lookup in MLflow, a small file read in the file
registry), never a download — so N replicas cost N small queries per interval and a slow or
unreachable tracking store never holds up a request. A new version is loaded (downloaded once
into the local cache) before it replaces the old one, so a version that fails to load leaves
the old one serving; it is retried after ``retry_failed_s``, not on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from models.registry import open_registry

log = logging.getLogger("preread.reload")
Reader = TypeVar("Reader")


class ReloadingReader(Generic[Reader]):
    def __init__(
        self,
        registry,
        ref: str,
        load: Callable[[], Reader],
        interval_s: float = 10.0,
        background: bool = True,
        retry_failed_s: float = 300.0,
    ):
        """``registry``: a Registry or a location (see models.registry.open_registry); ``load``
        builds the reader for what ``ref`` points at now. With ``background`` (and interval_s > 0)
        a daemon thread polls; otherwise :meth:`maybe_reload` checks on the caller's thread."""
        self.registry = open_registry(registry)
        self.ref, self.load, self.interval_s = ref, load, interval_s
        self.retry_failed_s = retry_failed_s
        self.version = self.registry.version_of(ref)
        self.current: Reader = load()
        self._checked_at = time.monotonic()
        self._failed: tuple[int, float] | None = None  # (version, when) of the last load that failed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.background = background and interval_s > 0
        if self.background:
            threading.Thread(
                target=_poll, args=(weakref.ref(self), self._stop, interval_s), daemon=True, name=f"follow {ref}"
            ).start()

    def maybe_reload(self, force: bool = False) -> bool:
        """Load the version ``ref`` points at now if it changed. Without ``force`` this is a no-op
        when a background thread polls, else a check at most every ``interval_s``. Returns True
        when it switched."""
        if not force and (
            self.background or self.interval_s <= 0 or time.monotonic() - self._checked_at < self.interval_s
        ):
            return False
        return self._check(retry_failed=force)

    def _check(self, retry_failed: bool) -> bool:
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                version = self.registry.version_of(self.ref)
            except Exception as exc:  # noqa: BLE001 - the store is down or the alias was removed: keep serving
                log.warning(
                    "could not check %s in %s (%s); still serving version %s",
                    self.ref,
                    self.registry.location,
                    exc,
                    self.version,
                )
                return False
            if version == self.version:
                return False
            if (
                not retry_failed
                and self._failed is not None
                and self._failed[0] == version
                and time.monotonic() - self._failed[1] < self.retry_failed_s
            ):
                return False
            try:
                reader = self.load()
            except Exception:  # keep serving the model we have; say why the new one did not load
                self._failed = (version, time.monotonic())
                log.exception(
                    "could not load version %s of %s; still serving version %s", version, self.ref, self.version
                )
                return False
            log.warning("%s moved from version %s to %s: switched", self.ref, self.version, version)
            self.current, self.version, self._failed = reader, version, None
            return True

    def close(self) -> None:
        """Stop following (the thread ends at its next wake-up)."""
        self._stop.set()

    def __getattr__(self, name: str) -> Any:
        # read_batch, backend, model_identity ... of whichever version is current
        if name == "current":  # not loaded (yet): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.current, name)


def _poll(reader_ref: weakref.ref[ReloadingReader], stop: threading.Event, interval_s: float) -> None:
    """Follow the alias until stopped or the reader is gone (a weak reference: the thread never
    keeps an unused reader, and its model, alive)."""
    while not stop.wait(interval_s):
        reader = reader_ref()
        if reader is None:
            return
        try:
            reader._check(retry_failed=False)
        except Exception:  # the thread must outlive any one bad poll
            log.exception("following %s failed", reader.ref)
        del reader

"""Follow a registry alias while serving: when `preread models promote` moves `NAME@champion`,
replicas load the new version and switch over between batches, without a restart.

The check is a cheap read of the registry's alias file, at most every ``interval_s`` seconds,
done on the request path of the replica (no extra thread to manage); the new version is loaded
before it replaces the old one, so a failed load leaves the old model serving.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generic, TypeVar

from models.registry import ModelRegistry

log = logging.getLogger("preread.reload")
Reader = TypeVar("Reader")


class ReloadingReader(Generic[Reader]):
    def __init__(self, registry_root, ref: str, load: Callable[[], Reader], interval_s: float = 10.0):
        self.registry = ModelRegistry(registry_root)
        self.ref, self.load, self.interval_s = ref, load, interval_s
        self.version = self.registry.resolve(ref).version
        self.current: Reader = load()
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    def maybe_reload(self, force: bool = False) -> bool:
        """Load the version ``ref`` points at now if it changed (checked at most every ``interval_s``
        unless ``force``). Returns True when it switched."""
        if not force and (self.interval_s <= 0 or time.monotonic() - self._checked_at < self.interval_s):
            return False
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                version = self.registry.resolve(self.ref).version
                if version == self.version:
                    return False
                reader = self.load()
            except Exception:  # keep serving the model we have; say why the new one did not load
                log.exception("could not load the new version of %s; still serving version %s", self.ref, self.version)
                return False
            log.warning("%s moved from version %s to %s: switched", self.ref, self.version, version)
            self.current, self.version = reader, version
            return True

    def __getattr__(self, name: str) -> Any:
        # read_batch, backend, model_identity ... of whichever version is current
        return getattr(self.current, name)

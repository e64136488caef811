"""Taking one thing in, the same way for every input (watch folder, C-STORE, command line): identify
it, quarantine it with the reason if it cannot be sent, refuse it if the disk is too full, else
queue it durably. The caller acknowledges only on ``Accepted``."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from preread.send.parcel import ParcelError, identify
from preread.send.queue import DiskFull, SendQueue

log = logging.getLogger("preread.send.accept")


@dataclass(frozen=True)
class Accepted:
    item_id: int
    created: bool
    key: str


@dataclass(frozen=True)
class Quarantined:
    path: Path
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str  # the disk is full: nothing was written, the sender keeps the original where it is


Verdict = Accepted | Quarantined | Refused


class Intake:
    def __init__(self, queue: SendQueue, quarantine_dir: Path):
        self.queue, self.quarantine_dir = queue, quarantine_dir

    def take(self, data: bytes, label: str, source: str) -> Verdict:
        try:
            parcel = identify(data, label)
        except ParcelError as exc:
            return self.quarantine(data, label, exc.reason)
        try:
            added = self.queue.add(parcel, source)
        except DiskFull as exc:
            log.error("refused %s from %s: %s", label, source, exc)
            return Refused(str(exc))
        if added.created:
            log.info("queued %s (%s, %s) from %s", label, parcel.kind.value, parcel.key, source)
        return Accepted(added.item_id, added.created, parcel.key)

    def quarantine(self, data: bytes, label: str, reason: str) -> Quarantined:
        """Put the bytes aside with a note saying why; they never enter the queue."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(label).name) or "unnamed"
        path = self.quarantine_dir / f"{stamp}-{safe}"
        n = 1
        while path.exists():
            path = self.quarantine_dir / f"{stamp}-{n}-{safe}"
            n += 1
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        path.with_name(path.name + ".reason.txt").write_text(f"{label}\n{reason}\n", encoding="utf-8")
        log.warning("quarantined %s: %s (kept as %s)", label, reason, path)
        return Quarantined(path, reason)

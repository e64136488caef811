"""The durable local queue: SQLite (WAL, synchronous=FULL) for the rows, one file per queued thing.

``add`` writes the file, fsyncs it and its folder, then commits the row, and only then returns: the
caller acknowledges (C-STORE success, removal from the watch folder) after that, so a power cut
loses nothing that was acknowledged. The key (SOP Instance UID, or the content hash of an ECG file)
is unique: the same thing added twice is one item. After a crash an item caught mid-upload is
simply still ``queued``; resending it is harmless because the service is idempotent on the same key.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preread.send.parcel import Kind, Parcel

QUEUED, SENT, REFUSED = "queued", "sent", "refused"
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    file TEXT,
    size_bytes INTEGER NOT NULL,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    study_uid TEXT,
    sop_uid TEXT,
    modality TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    wire_bytes INTEGER,
    queued_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS items_due ON items (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    modality TEXT NOT NULL,
    label TEXT NOT NULL,
    server_status TEXT,
    level TEXT,
    quality_ok INTEGER,
    read_file TEXT,
    report_status TEXT,
    report_file TEXT,
    notified INTEGER NOT NULL DEFAULT 0,
    first_sent_at REAL NOT NULL,
    next_poll_at REAL NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0
);
"""


class DiskFull(RuntimeError):
    """Accepting this would leave less free space than the configured reserve: refused, nothing written."""


@dataclass(frozen=True)
class Item:
    id: int
    key: str
    kind: Kind
    file: Path | None
    size_bytes: int
    label: str
    study_uid: str | None
    modality: str
    state: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Added:
    item_id: int
    created: bool


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder for fsync; NTFS journals the rename itself
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SendQueue:
    """One per state folder; safe to share between the listener, watcher and uploader threads."""

    def __init__(self, database: Path, files: Path, reserve_bytes: int = 0):
        self.files, self.reserve_bytes = files, reserve_bytes
        files.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(database), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.executescript(SCHEMA)
        self._remove_orphans()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- accepting ------------------------------------------------------------------------------
    def add(self, parcel: Parcel, source: str) -> Added:
        """Store ``parcel`` durably (file fsynced, row committed). Raises DiskFull (nothing written)."""
        existing = self._id_of(parcel.key)
        if existing is not None:
            return Added(existing, False)
        self.check_space(len(parcel.data))
        path = self.files / f"{parcel.sha256}.bin"
        if not path.exists():
            tmp = self.files / f".incoming-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(parcel.data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise DiskFull(
                    f"could not write the queued copy ({exc.strerror or exc}): study refused, "
                    "nothing already queued is affected"
                ) from exc
            _fsync_dir(self.files)
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO items (key, kind, sha256, file, size_bytes, label, source, study_uid, sop_uid,"
                " modality, state, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    parcel.key,
                    parcel.kind.value,
                    parcel.sha256,
                    path.name,
                    len(parcel.data),
                    parcel.label,
                    source,
                    parcel.study_uid,
                    parcel.sop_uid,
                    parcel.modality,
                    QUEUED,
                    time.time(),
                ),
            )
            created = cursor.rowcount == 1
        item_id = self._id_of(parcel.key)
        return Added(item_id, created)

    def check_space(self, incoming: int) -> None:
        free = shutil.disk_usage(self.files).free
        if free - incoming < self.reserve_bytes:
            raise DiskFull(
                f"disk nearly full: {free / 2**20:.0f} MiB free, {self.reserve_bytes / 2**20:.0f} MiB "
                "must stay free (disk_reserve_mb): new studies are refused until space is freed; "
                "everything already queued is kept and still sent"
            )

    def _id_of(self, key: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row["id"])

    # --- sending --------------------------------------------------------------------------------
    def next_due(self, now: float | None = None) -> Item | None:
        """The oldest queued item whose backoff has passed."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM items WHERE state = ? AND next_attempt_at <= ? ORDER BY id LIMIT 1",
                (QUEUED, time.time() if now is None else now),
            ).fetchone()
        return None if row is None else self._item(row)

    def next_wake(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_at) AS t FROM items WHERE state = ?", (QUEUED,)).fetchone()
        return row["t"]

    def read_bytes(self, item: Item) -> bytes:
        return (self.files / item.file.name).read_bytes()

    def mark_sent(self, item: Item, study_uid: str, wire_bytes: int) -> None:
        """The service stored it: the item is done; the study is followed for its results."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE items SET state = ?, study_uid = ?, sent_at = ?, wire_bytes = ?, last_error = NULL"
                " WHERE id = ?",
                (SENT, study_uid, now, wire_bytes, item.id),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO studies (study_uid, modality, label, first_sent_at) VALUES (?,?,?,?)",
                (study_uid, item.modality, item.label, now),
            )
            self._db.execute("COMMIT")
        self._drop_file(item)

    def mark_retry(self, item: Item, error: str, delay_s: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE items SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (error, time.time() + delay_s, item.id),
            )

    def mark_refused(self, item: Item, reason: str) -> None:
        """The service said never: stop sending this one, keep the file and the reason for people."""
        with self._lock:
            self._db.execute(
                "UPDATE items SET state = ?, last_error = ?, attempts = attempts + 1 WHERE id = ?",
                (REFUSED, reason, item.id),
            )

    def _drop_file(self, item: Item) -> None:
        with self._lock:
            still = self._db.execute(
                "SELECT 1 FROM items WHERE file = ? AND state = ? LIMIT 1", (item.file.name, QUEUED)
            ).fetchone()
        if still is None:
            (self.files / item.file.name).unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        """Files a crash left between the write and the commit (never acknowledged), and sent items' files."""
        with self._lock:
            wanted = {r["file"] for r in self._db.execute("SELECT file FROM items WHERE state != ?", (SENT,))}
        for path in self.files.iterdir():
            if path.name.startswith(".incoming-") or (path.suffix == ".bin" and path.name not in wanted):
                path.unlink(missing_ok=True)

    # --- studies and their results ---------------------------------------------------------------
    def studies_due(self, now: float, max_age_s: float) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM studies WHERE next_poll_at <= ? AND (report_file IS NULL) AND first_sent_at >= ?"
                " ORDER BY next_poll_at, first_sent_at",
                (now, now - max_age_s),
            ).fetchall()
        return [dict(r) for r in rows]

    def update_study(self, study_uid: str, **values: Any) -> None:
        if not values:
            return
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._lock:
            self._db.execute(f"UPDATE studies SET {columns} WHERE study_uid = ?", (*values.values(), study_uid))

    def study(self, study_uid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
        return None if row is None else dict(row)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM items ORDER BY id")]

    def studies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM studies ORDER BY first_sent_at")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM items GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    @staticmethod
    def _item(row: sqlite3.Row) -> Item:
        return Item(
            id=int(row["id"]),
            key=row["key"],
            kind=Kind(row["kind"]),
            file=Path(row["file"]) if row["file"] else None,
            size_bytes=int(row["size_bytes"]),
            label=row["label"],
            study_uid=row["study_uid"],
            modality=row["modality"],
            state=row["state"],
            attempts=int(row["attempts"]),
            last_error=row["last_error"],
        )

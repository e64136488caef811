"""Append-only, hash-chained audit trail: who did what, when, from where.

Each row's hash is sha256(previous row's hash + canonical JSON of the row), so editing, deleting or
reordering any row breaks the chain from that row on; ``verify_chain`` finds the first broken row.
Appends are serialised (a process lock; across processes a transaction-scoped advisory lock on
PostgreSQL and SQLite's write lock taken before the tail is read) so the chain stays linear with
several writers.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from serving.store.db import Database, as_utc
from serving.store.schema import AuditEntry, utcnow

GENESIS = "0" * 64
_ADVISORY_KEY = 0x70726572  # "prer"
_lock = threading.Lock()


def _iso(value: datetime) -> str:
    return as_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _content(entry: AuditEntry) -> dict[str, Any]:
    """What a row says (the fields its hash covers)."""
    return {
        "id": entry.id,
        "at": _iso(entry.at),
        "user": entry.user,
        "role": entry.role,
        "action": entry.action,
        "study_uid": entry.study_uid,
        "detail": entry.detail,
        "client": entry.client,
    }


def canonical(entry: AuditEntry) -> str:
    """The row as canonical JSON (sorted keys, no spaces, UTC times to the microsecond)."""
    return json.dumps(_content(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


@contextmanager
def appending(db: Database) -> Iterator[Session]:
    """A transaction that holds the chain's tail: appends made in it (``append``) stay linear, and
    commit or roll back together with whatever else the transaction changes (e.g. the AI read an
    ``ai_read`` event records)."""
    with _lock, db.session() as session:
        if db.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        elif db.engine.dialect.name == "sqlite":
            # A write first takes SQLite's write lock, so other processes wait before reading the tail.
            session.execute(text("UPDATE audit_log SET id = id WHERE id = -1"))
        yield session


class EventFields(TypedDict, total=False):
    """The optional fields of an audit event: who did it (user, role, client address), to which study,
    and the details of what was done."""

    user: str | None
    role: str | None
    study_uid: str | None
    detail: dict[str, Any] | None
    client: str | None


def append(session: Session, action: str, **fields: Unpack[EventFields]) -> AuditEntry:
    """Append one entry inside an ``appending`` transaction."""
    # Round-trip the detail through JSON now so the hash is computed on what the database returns.
    detail = fields.get("detail")
    detail = json.loads(json.dumps(detail, default=str)) if detail is not None else None
    last = session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
    prev = last.hash if last is not None else GENESIS
    entry = AuditEntry(
        at=utcnow(),
        user=fields.get("user"),
        role=fields.get("role"),
        action=action[:32],
        study_uid=fields.get("study_uid"),
        detail=detail,
        client=(fields.get("client") or "")[:64] or None,
        prev_hash=prev,
        hash="",
    )
    session.add(entry)
    session.flush()  # assigns the id the hash covers
    entry.hash = row_hash(prev, entry)
    return entry


def record(db: Database, action: str, **fields: Unpack[EventFields]) -> AuditEntry:
    """Append one entry to the chain and return it."""
    with appending(db) as session:
        return append(session, action, **fields)


# --- repeated views -------------------------------------------------------------------------------
@dataclass
class _ViewWindow:
    """Identical views by one user in one window: the first was written at once; the repeats are
    written as one event (count, first and last time) when the window closes."""

    db: Database
    window_s: float
    opened: datetime
    last: datetime
    repeats: int
    action: str
    fields: EventFields


_views: dict[tuple, _ViewWindow] = {}
_views_lock = threading.Lock()


def record_view(
    db: Database, action: str, window_s: float, *, now: datetime | None = None, **fields: Unpack[EventFields]
) -> AuditEntry | None:
    """An access that a page repeats on a timer (the worklist poll). The first view in a window is
    appended at once, like any event; identical views in the next ``window_s`` seconds only count,
    and are appended as one ``repeated`` event when the window closes (next view after it, or the
    dispatcher's ``flush_views``). Every access stays on the chain; a poll is no longer a row."""
    now = now or utcnow()
    if window_s <= 0:
        return record(db, action, **fields)
    view = {field: fields.get(field) for field in EventFields.__annotations__}
    key = (db.url, json.dumps({"action": action, **view}, sort_keys=True, default=str))
    with _views_lock:
        window = _views.get(key)
        if window is not None and (now - window.opened).total_seconds() < window.window_s:
            window.repeats += 1
            window.last = now
            return None
        closed = _views.pop(key, None)
        _views[key] = _ViewWindow(db, window_s, now, now, 0, action, fields)
    if closed is not None:
        _write_repeats(closed)
    return record(db, action, **_with_detail(fields, window_seconds=window_s))


def _with_detail(fields: EventFields, **extra: Any) -> EventFields:
    """The same event with ``extra`` added to its detail."""
    out = fields.copy()
    out["detail"] = {**(fields.get("detail") or {}), **extra}
    return out


def flush_views(db: Database | None = None, now: datetime | None = None, force: bool = False) -> int:
    """Write the repeats of every closed window (all windows with ``force``). Returns events written."""
    now = now or utcnow()
    with _views_lock:
        done = [
            key
            for key, w in _views.items()
            if (db is None or w.db.url == db.url) and (force or (now - w.opened).total_seconds() >= w.window_s)
        ]
        closed = [_views.pop(key) for key in done]
    return sum(_write_repeats(window) for window in closed)


def _write_repeats(window: _ViewWindow) -> int:
    if window.repeats == 0:
        return 0
    repeats = _with_detail(
        window.fields, repeated=window.repeats, first_at=_iso(window.opened), last_at=_iso(window.last)
    )
    record(window.db, window.action, **repeats)
    return 1


@dataclass
class ChainCheck:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_bad_id": self.first_bad_id, "reason": self.reason}


def verify_chain(db: Database) -> ChainCheck:
    """Walk the whole trail in id order; report the first row whose link or hash does not match."""
    with db.session() as session:
        entries: Iterable[AuditEntry] = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    prev, n = GENESIS, 0
    for entry in entries:
        n += 1
        if entry.prev_hash != prev:
            return ChainCheck(
                False, n, entry.id, "previous-hash link broken (a row was removed, inserted or reordered)"
            )
        if row_hash(prev, entry) != entry.hash:
            return ChainCheck(False, n, entry.id, "row content does not match its hash (the row was edited)")
        prev = entry.hash
    return ChainCheck(True, n)


def entries(
    db: Database,
    *,
    limit: int = 200,
    offset: int = 0,
    user: str | None = None,
    action: str | None = None,
    study_uid: str | None = None,
) -> list[AuditEntry]:
    query = select(AuditEntry)
    if user:
        query = query.where(AuditEntry.user == user)
    if action:
        query = query.where(AuditEntry.action == action)
    if study_uid:
        query = query.where(AuditEntry.study_uid == study_uid)
    with db.session() as session:
        return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all())


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {**_content(entry), "prev_hash": entry.prev_hash, "hash": entry.hash}

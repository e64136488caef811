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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import select, text

from serving.store.db import Database, as_utc
from serving.store.schema import AuditEntry, utcnow

GENESIS = "0" * 64
_ADVISORY_KEY = 0x70726572  # "prer"
_lock = threading.Lock()


def _iso(value: datetime) -> str:
    return as_utc(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: AuditEntry) -> str:
    """The row as canonical JSON (sorted keys, no spaces, UTC times to the microsecond)."""
    return json.dumps({
        "id": entry.id, "at": _iso(entry.at), "user": entry.user, "role": entry.role,
        "action": entry.action, "study_uid": entry.study_uid, "detail": entry.detail,
        "client": entry.client,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


def record(db: Database, action: str, *, user: str | None = None, role: str | None = None,
           study_uid: str | None = None, detail: dict[str, Any] | None = None,
           client: str | None = None) -> AuditEntry:
    """Append one entry to the chain and return it."""
    # Round-trip the detail through JSON now so the hash is computed on what the database returns.
    detail = json.loads(json.dumps(detail, default=str)) if detail is not None else None
    with _lock, db.session() as session:
        if db.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        elif db.engine.dialect.name == "sqlite":
            # A write first takes SQLite's write lock, so other processes wait before reading the tail.
            session.execute(text("UPDATE audit_log SET id = id WHERE id = -1"))
        last = session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
        prev = last.hash if last is not None else GENESIS
        at = utcnow()
        entry = AuditEntry(at=at, user=user, role=role, action=action[:32], study_uid=study_uid,
                           detail=detail, client=(client or "")[:64] or None, prev_hash=prev, hash="")
        session.add(entry)
        session.flush()  # assigns the id the hash covers
        entry.hash = row_hash(prev, entry)
    return entry


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
            return ChainCheck(False, n, entry.id, "previous-hash link broken (a row was removed, inserted or reordered)")
        if row_hash(prev, entry) != entry.hash:
            return ChainCheck(False, n, entry.id, "row content does not match its hash (the row was edited)")
        prev = entry.hash
    return ChainCheck(True, n)


def entries(db: Database, *, limit: int = 200, offset: int = 0, user: str | None = None,
            action: str | None = None, study_uid: str | None = None) -> list[AuditEntry]:
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
    return {"id": entry.id, "at": _iso(entry.at), "user": entry.user, "role": entry.role,
            "action": entry.action, "study_uid": entry.study_uid, "detail": entry.detail,
            "client": entry.client, "prev_hash": entry.prev_hash, "hash": entry.hash}

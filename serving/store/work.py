"""The durable queue of AI reads, kept in the studies table itself.

A study waits for its AI read in status ``received`` (or ``ai_failed`` with a retry time). A worker
(one ingress replica's dispatcher, or the request that accepted an ECG) *leases* it with a
conditional UPDATE — the database decides who wins, on SQLite and PostgreSQL alike — and renews the
lease while it works. A worker that dies (kill -9 of a replica or of the whole service) stops
renewing; after ``lease_seconds`` another worker takes the study over. So nothing accepted waits
forever, and nothing depends on the process that accepted it surviving.

Recording is exactly-once: ``record_read`` is one conditional UPDATE (``read_at IS NULL``) plus the
``ai_read`` audit event in the same transaction, so a read computed twice (a lease taken over from
a worker that was slow, not dead) is recorded once, and the audit trail counts one read per study.

Failures are retried with exponential backoff up to ``max_attempts`` (counted when a lease is
taken, so a study that kills its worker every time is bounded too); in between, and after the last
try, the study is listed as ``ai_failed`` with the reason and the next try: never hidden.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select, update

from models.read import PreRead
from serving.store import audit
from serving.store.db import Database, as_utc
from serving.store.schema import AI_FAILED, AI_READ, NO_AI_READ, RECEIVED, AuditEntry, Study, utcnow

READ_BY = "preread"  # the audit trail's user for AI reads


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: base, 2×base, 4×base … capped."""
        return min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempts - 1))


def _db_time(db: Database, value: datetime) -> datetime:
    """SQLite keeps our UTC datetimes as naive strings: compare like with like there."""
    if db.engine.dialect.name == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def worker_name() -> str:
    """Who holds a lease: host, process and a random part (a restarted process is a new worker)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkQueue:
    """This process's view of the queue: its worker id, the studies it is working on (their leases
    are renewed), and the lease / stability / retry settings."""

    def __init__(
        self,
        db: Database,
        lease_seconds: float = 60.0,
        stable_seconds: float = 2.0,
        policy: RetryPolicy | None = None,
        worker_id: str | None = None,
    ):
        self.db = db
        self.lease_seconds, self.stable_seconds = lease_seconds, stable_seconds
        self.policy = policy or RetryPolicy()
        self.worker_id = worker_id or worker_name()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._last_renewal = datetime.min.replace(tzinfo=UTC)
        self._arrival_listeners: list[Callable[[str | None], None]] = []
        # What the reading room adds to a read just before it is recorded (the comparison with the
        # patient's prior: serving/reading/priors.py); composed in serving/services.py.
        self.annotate: Callable[[str, PreRead], PreRead] | None = None

    # --- arrivals -------------------------------------------------------------------------------
    def on_arrival(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(modality)`` whenever ``arrived`` is told of new work (the dispatcher's wake)."""
        self._arrival_listeners.append(listener)

    def arrived(self, modality: str | None = None) -> None:
        """New work was stored (from any thread): wake whoever reads the queue."""
        for listener in list(self._arrival_listeners):
            listener(modality)

    @classmethod
    def from_config(cls, db: Database, cfg: Any) -> WorkQueue:
        recovery = cfg.recovery
        return cls(
            db,
            lease_seconds=cfg.dicom.lease_seconds,
            stable_seconds=cfg.dicom.study_stable_seconds,
            policy=RetryPolicy(recovery.max_attempts, recovery.backoff_base_seconds, recovery.backoff_max_seconds),
        )

    # --- leases ---------------------------------------------------------------------------------
    def _claimable(self, now: datetime):
        stale = _db_time(self.db, now - timedelta(seconds=self.lease_seconds))
        due = _db_time(self.db, now)
        return and_(
            Study.read_at.is_(None),
            Study.no_ai == false(),
            Study.ai_attempts < self.policy.max_attempts,
            or_(Study.status == RECEIVED, and_(Study.status == AI_FAILED, Study.next_attempt_at <= due)),
            or_(Study.processing_since.is_(None), Study.processing_since < stale),
        )

    def claim(self, study_uid: str, now: datetime | None = None) -> bool:
        """Lease one study if it is waiting and nobody holds a live lease on it."""
        now = now or utcnow()
        with self.db.session() as session:
            result = session.execute(
                update(Study)
                .where(Study.study_uid == study_uid, self._claimable(now))
                .values(processing_since=now, processing_by=self.worker_id, ai_attempts=Study.ai_attempts + 1)
                .execution_options(synchronize_session=False)
            )
        return result.rowcount == 1

    def claim_due(self, limit: int = 16, modality: str | None = None, now: datetime | None = None) -> list[str]:
        """Lease up to ``limit`` studies that are due: waiting (images: once no instance arrived for
        ``stable_seconds``) or failed with their retry time reached, and not leased by a live worker.
        Oldest first."""
        now = now or utcnow()
        stable_before = now - timedelta(seconds=self.stable_seconds)
        query = (
            select(Study.study_uid, Study.modality, Study.last_instance_at, Study.arrived_at)
            .where(self._claimable(now))
            .order_by(Study.arrived_at)
            .limit(limit * 4)
        )
        if modality:
            query = query.where(Study.modality == modality)
        with self.db.session() as session:
            candidates = session.execute(query).all()
        claimed: list[str] = []
        for study_uid, kind, last, arrived in candidates:
            # An image study is read once its series stopped arriving; an ECG is one object.
            if kind != "ECG" and (as_utc(last) or as_utc(arrived)) > stable_before:
                continue
            if self.claim(study_uid, now):
                claimed.append(study_uid)
                if len(claimed) >= limit:
                    break
        return claimed

    def hold(self, study_uid: str) -> None:
        """This worker is working on the study: keep its lease alive (see ``renew``)."""
        with self._lock:
            self._held.add(study_uid)

    def drop(self, study_uid: str) -> None:
        with self._lock:
            self._held.discard(study_uid)

    @property
    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def renew(self, now: datetime | None = None, force: bool = False) -> int:
        """Refresh the leases of the studies this worker holds (at most every lease/3 seconds)."""
        now = now or utcnow()
        held = self.held
        if not held or (not force and (now - self._last_renewal).total_seconds() < self.lease_seconds / 3):
            return 0
        self._last_renewal = now
        with self.db.session() as session:
            result = session.execute(
                update(Study)
                .where(Study.study_uid.in_(held), Study.processing_by == self.worker_id)
                .values(processing_since=now)
                .execution_options(synchronize_session=False)
            )
        return result.rowcount

    def release(self, study_uid: str) -> None:
        self.drop(study_uid)
        with self.db.session() as session:
            session.execute(
                update(Study)
                .where(Study.study_uid == study_uid, Study.processing_by == self.worker_id)
                .values(processing_since=None, processing_by=None)
                .execution_options(synchronize_session=False)
            )

    # --- outcomes -------------------------------------------------------------------------------
    def record_read(
        self,
        study_uid: str,
        read: dict[str, Any],
        level: str,
        score: float,
        model_name: str,
        model_version: str,
        now: datetime | None = None,
    ) -> bool:
        """Attach the AI read (its stored JSON) — once. Returns False when the study already had one
        (a duplicate computation) or the patient declined the AI read: nothing changes then."""
        now = now or utcnow()
        self.drop(study_uid)
        with audit.appending(self.db) as session:
            result = session.execute(
                update(Study)
                .where(Study.study_uid == study_uid, Study.read_at.is_(None), Study.no_ai == false())
                .values(
                    ai_read=read,
                    level=level,
                    score=score,
                    model_name=model_name,
                    model_version=str(model_version),
                    read_at=now,
                    ai_error=None,
                    next_attempt_at=None,
                    processing_since=None,
                    processing_by=None,
                    status=case((Study.status.in_((RECEIVED, AI_FAILED)), AI_READ), else_=Study.status),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            attempts = session.scalar(select(Study.ai_attempts).where(Study.study_uid == study_uid))
            audit.append(
                session,
                "ai_read",
                user=READ_BY,
                role="system",
                study_uid=study_uid,
                client=self.worker_id,
                detail={"model": model_name, "version": str(model_version), "level": level, "attempt": attempts},
            )
        return True

    def record_pre_read(self, study_uid: str, read: PreRead, now: datetime | None = None) -> bool:
        """``record_read`` of a typed pre-read: its JSON, level, score and model identity."""
        if self.annotate is not None:
            read = self.annotate(study_uid, read)
        return self.record_read(
            study_uid,
            read.to_json(),
            read.triage.level.value,
            read.triage.score,
            read.model.name,
            str(read.model.version),
            now,
        )

    def record_failure(self, study_uid: str, error: str, final: bool = False, now: datetime | None = None) -> str:
        """A failed attempt: listed as ai_failed with the reason and when it is tried again (or that
        it will not be: after ``max_attempts``, or ``final`` for errors a retry cannot fix)."""
        now = now or utcnow()
        self.drop(study_uid)
        with self.db.session() as session:
            attempts = session.scalar(select(Study.ai_attempts).where(Study.study_uid == study_uid)) or 0
            if final or attempts >= self.policy.max_attempts:
                retry_at, note = None, (f"{error} — no further automatic attempt ({attempts} made): read by a doctor")
            else:
                retry_at = now + timedelta(seconds=self.policy.delay(attempts))
                note = (
                    f"{error} — attempt {attempts} of {self.policy.max_attempts}; next at "
                    f"{retry_at.strftime('%H:%M:%S')} UTC"
                )
            session.execute(
                update(Study)
                .where(Study.study_uid == study_uid, Study.read_at.is_(None))
                .values(
                    ai_error=note[:2000],
                    next_attempt_at=retry_at,
                    processing_since=None,
                    processing_by=None,
                    status=case((Study.status == RECEIVED, AI_FAILED), else_=Study.status),
                )
                .execution_options(synchronize_session=False)
            )
        return note

    def give_up_on_dead_leases(self, now: datetime | None = None) -> int:
        """Studies still ``received`` whose every attempt ended with its worker gone (the lease went
        stale ``max_attempts`` times): list them as ai_failed instead of trying forever."""
        now = now or utcnow()
        stale = _db_time(self.db, now - timedelta(seconds=self.lease_seconds))
        with self.db.session() as session:
            result = session.execute(
                update(Study)
                .where(
                    Study.status == RECEIVED,
                    Study.read_at.is_(None),
                    Study.ai_attempts >= self.policy.max_attempts,
                    or_(Study.processing_since.is_(None), Study.processing_since < stale),
                )
                .values(
                    status=AI_FAILED,
                    next_attempt_at=None,
                    processing_since=None,
                    processing_by=None,
                    ai_error=f"the worker reading this study stopped {self.policy.max_attempts} times — "
                    "no further automatic attempt: read by a doctor",
                )
                .execution_options(synchronize_session=False)
            )
        return result.rowcount


def refuse_ai(db: Database, study_uid: str, reason: str = "the patient declined an automated pre-read") -> bool:
    """Honour a patient's refusal of the automated read: no model reads the study from now on, and a
    read already made is withdrawn from the worklist (the doctor reads it without it)."""
    with db.session() as session:
        result = session.execute(
            update(Study)
            .where(Study.study_uid == study_uid)
            .values(
                no_ai=True,
                ai_read=None,
                level=None,
                score=None,
                ai_error=reason,
                next_attempt_at=None,
                processing_since=None,
                processing_by=None,
                status=case((Study.status.in_((RECEIVED, AI_FAILED, AI_READ)), NO_AI_READ), else_=Study.status),
            )
            .execution_options(synchronize_session=False)
        )
    return result.rowcount == 1


def ai_read_counts(db: Database, study_uids: Iterable[str] | None = None) -> dict[str, int]:
    """How many ``ai_read`` audit events each study has (exactly-once checks)."""
    query = (
        select(AuditEntry.study_uid, func.count(AuditEntry.id))
        .where(AuditEntry.action == "ai_read")
        .group_by(AuditEntry.study_uid)
    )
    with db.session() as session:
        counts = {uid: n for uid, n in session.execute(query).all()}
    return counts if study_uids is None else {uid: counts.get(uid, 0) for uid in study_uids}

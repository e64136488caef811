"""Database access: engine set-up, migrations, and the worklist's reads and writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import case, create_engine, event, func, nulls_last, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from datasets.vocabulary import LEVEL_RANK, TriageLevel
from serving.store.schema import (
    AI_FAILED,
    AI_READ,
    CLAIMED,
    NO_AI_READ,
    RECEIVED,
    Instance,
    Study,
    utcnow,
)

# What the worklist says of a study whose patient declined the automated read.
NO_AI_REASON = "the patient declined an automated pre-read (no AI read)"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
OPEN_STATUSES = (RECEIVED, AI_READ, NO_AI_READ, AI_FAILED, CLAIMED)
LEVEL_ORDER = tuple(level.value for level in TriageLevel)  # most urgent first


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass
class NewInstance:
    """What ingest knows about an object once its bytes are durably stored."""

    sop_instance_uid: str
    study_uid: str
    site: str
    modality: str
    content_type: str
    storage_key: str
    sha256: str
    size_bytes: int
    source: str
    sender: str | None = None
    series_uid: str | None = None
    sop_class_uid: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_key: str | None = None  # serving/privacy.py identity_string, keyed (see Study.patient_key)
    patient_sex: str | None = None
    patient_age: str | None = None
    description: str | None = None
    status: str = RECEIVED
    # The worker that reads a new study at once (the ECG paths) leases it at creation, so the
    # queue's sweeper does not take it while that read runs; None leaves it to the sweeper.
    lease_by: str | None = None
    no_ai: bool = False  # the patient declined the automated read
    # How soon a model should read it (a level; e.g. from the C-STORE request's Priority): the
    # study keeps the most urgent its objects arrived with.
    priority: str | None = None


@dataclass
class DicomAttributes:
    """What an instance's DICOM header adds to its row (defaults fit objects without one)."""

    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    role: str = "original"  # original | ai_sr | ai_sc
    study_date: str | None = None
    accession_number: str | None = None


@dataclass
class Aging:
    """Minutes a study may wait at each level before it moves up one (critical: flagged overdue)."""

    critical: float = 15
    urgent: float = 60
    routine: float = 240

    def effective(self, level: str | None, arrived_at: datetime, now: datetime) -> tuple[str, str | None, bool]:
        """(level shown, escalation reason or None, overdue?) for a study waiting since ``arrived_at``."""
        waited = (now - as_utc(arrived_at)).total_seconds() / 60.0
        base = level or "routine"
        if base == "routine" and waited >= self.routine + self.urgent:
            return (
                "critical",
                f"waiting {waited:.0f} min (routine limit {self.routine:g} + urgent limit {self.urgent:g})",
                False,
            )
        if base == "routine" and waited >= self.routine:
            return "urgent", f"waiting {waited:.0f} min > routine limit {self.routine:g} min", False
        if base == "urgent" and waited >= self.urgent:
            return "critical", f"waiting {waited:.0f} min > urgent limit {self.urgent:g} min", False
        overdue = base == "critical" and waited >= self.critical
        return base, (f"critical waiting {waited:.0f} min > {self.critical:g} min" if overdue else None), overdue


class WorklistFilters(TypedDict, total=False):
    """What a reader narrows the worklist to (each optional): one site of theirs, a modality, statuses
    (default: the open ones), an effective triage level."""

    site: str | None
    modality: str | None
    statuses: Sequence[str] | None
    level: str | None


class Database:
    def __init__(self, url: str, echo: bool = False):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # --- set-up ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            with session.begin():
                yield session

    # --- ingest ---------------------------------------------------------------------------------
    def accept_instance(self, new: NewInstance, attrs: DicomAttributes | None = None) -> tuple[Study, Instance, bool]:
        """Record a durably stored object in one transaction. Returns (study, instance, created).
        Idempotent on the SOP Instance UID: a repeat returns the row already there and creates
        nothing. An original object refreshes the study's ``last_instance_at`` (what the image
        dispatcher waits on) and sends a study listed as no_ai_read back to routing."""
        attrs = attrs or DicomAttributes()
        existing = self.find_instance(new.sop_instance_uid)
        if existing is not None:
            return existing[0], existing[1], False
        now = utcnow()
        try:
            with self.session() as session:
                study = session.scalar(select(Study).where(Study.study_uid == new.study_uid))
                if study is None:
                    study = _new_study(new, attrs, now)
                    session.add(study)
                    session.flush()
                elif attrs.role == "original":
                    _another_original(study, new, now)
                instance = _new_instance(new, attrs, study.id, now)
                session.add(instance)
            return study, instance, True
        except IntegrityError:
            # A concurrent request stored the same object first: that one is the record.
            existing = self.find_instance(new.sop_instance_uid)
            if existing is None:
                raise
            return existing[0], existing[1], False

    def find_instance(self, sop_instance_uid: str) -> tuple[Study, Instance] | None:
        with self.session() as session:
            instance = session.scalar(
                select(Instance)
                .options(selectinload(Instance.study))
                .where(Instance.sop_instance_uid == sop_instance_uid)
            )
            return (instance.study, instance) if instance else None

    # --- reading --------------------------------------------------------------------------------
    def get_study(self, study_uid: str) -> Study | None:
        with self.session() as session:
            return session.scalar(
                select(Study).options(selectinload(Study.instances)).where(Study.study_uid == study_uid)
            )

    def count(self, **filters: Any) -> int:
        with self.session() as session:
            query = select(func.count(Study.id))
            for key, value in filters.items():
                query = query.where(getattr(Study, key) == value)
            return int(session.scalar(query))

    def worklist(
        self,
        sites: Sequence[str] | None,
        aging: Aging,
        now: datetime | None = None,
        *,
        limit: int = 200,
        offset: int = 0,
        **filters: Unpack[WorklistFilters],
    ) -> list[Study]:
        """Open studies for ``sites`` (None = all), ordered by effective level (after aging), then
        score (highest first), then waiting time (longest first). Nothing is filtered out unless the
        caller asks for a filter."""
        now = now or utcnow()
        rank = self._effective_rank(aging, now, sqlite=self.engine.dialect.name == "sqlite")
        query = self._worklist_filter(select(Study), rank, sites, filters)
        query = query.order_by(rank, nulls_last(Study.score.desc()), Study.arrived_at, Study.id)
        with self.session() as session:
            return list(session.scalars(query.limit(limit).offset(offset)).all())

    def worklist_total(
        self, sites: Sequence[str] | None, aging: Aging, now: datetime | None = None, **filters: Unpack[WorklistFilters]
    ) -> int:
        """How many studies the same worklist query holds (the page shows "251–300 of 450")."""
        rank = self._effective_rank(aging, now or utcnow(), sqlite=self.engine.dialect.name == "sqlite")
        query = self._worklist_filter(select(func.count(Study.id)), rank, sites, filters)
        with self.session() as session:
            return int(session.scalar(query))

    @staticmethod
    def _worklist_filter(query, rank, sites: Sequence[str] | None, filters: WorklistFilters):
        if sites is not None:
            query = query.where(Study.site.in_(list(sites)))
        if site := filters.get("site"):
            query = query.where(Study.site == site)
        if modality := filters.get("modality"):
            query = query.where(Study.modality == modality)
        query = query.where(Study.status.in_(list(filters.get("statuses") or OPEN_STATUSES)))
        if level := filters.get("level"):
            query = query.where(rank == LEVEL_ORDER.index(level))
        return query

    def open_depth_by_level(self, aging: Aging, now: datetime | None = None) -> dict[str, int]:
        """Open studies per effective level (after aging), all sites: the worklist's depth, for
        the Prometheus gauge (serving/metrics.py)."""
        rank = self._effective_rank(aging, now or utcnow(), sqlite=self.engine.dialect.name == "sqlite")
        query = select(rank, func.count()).where(Study.status.in_(list(OPEN_STATUSES))).group_by(rank)
        counts = dict.fromkeys(LEVEL_ORDER, 0)
        with self.session() as session:
            for level_rank, count in session.execute(query).all():
                counts[LEVEL_ORDER[int(level_rank)]] = int(count)
        return counts

    @staticmethod
    def _effective_rank(aging: Aging, now: datetime, sqlite: bool):
        """SQL twin of Aging.effective (0 critical, 1 urgent, 2 routine): cut-offs are bound
        parameters, so the ordering runs in the database on SQLite and PostgreSQL alike."""
        routine_to_urgent = now - timedelta(minutes=aging.routine)
        routine_to_critical = now - timedelta(minutes=aging.routine + aging.urgent)
        urgent_to_critical = now - timedelta(minutes=aging.urgent)
        # SQLite stores our UTC datetimes as naive ISO strings; compare like with like there.
        naive = (lambda v: v.astimezone(UTC).replace(tzinfo=None)) if sqlite else (lambda v: v)
        level = func.coalesce(Study.level, "routine")
        return case(
            (level == "critical", 0),
            ((level == "urgent") & (Study.arrived_at <= naive(urgent_to_critical)), 0),
            (level == "urgent", 1),
            (Study.arrived_at <= naive(routine_to_critical), 0),
            (Study.arrived_at <= naive(routine_to_urgent), 1),
            else_=2,
        )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _new_study(new: NewInstance, attrs: DicomAttributes, now: datetime) -> Study:
    """The study row for its first object; leased at once to ``new.lease_by`` when that replica reads it
    right away (an ECG sent over HTTP), listed as no_ai_read when the patient declined the pre-read."""
    leased = new.lease_by is not None and new.status == RECEIVED and not new.no_ai
    return Study(
        study_uid=new.study_uid,
        site=new.site,
        modality=new.modality,
        patient_id=new.patient_id,
        patient_name=new.patient_name,
        patient_key=new.patient_key,
        patient_sex=new.patient_sex,
        patient_age=new.patient_age,
        description=new.description,
        arrived_at=now,
        status=NO_AI_READ if new.no_ai else new.status,
        no_ai=new.no_ai,
        ai_error=NO_AI_REASON if new.no_ai else None,
        study_date=attrs.study_date,
        accession_number=attrs.accession_number,
        last_instance_at=now,
        ai_attempts=1 if leased else 0,
        processing_since=now if leased else None,
        processing_by=new.lease_by if leased else None,
        priority=new.priority,
    )


def _another_original(study: Study, new: NewInstance, now: datetime) -> None:
    """A later original object of a known study: a refusal of the pre-read holds for the study, the higher
    C-STORE priority wins, the study waits for the series to settle, and a study no model could read is
    routed again (the new series may be one a model reads)."""
    if new.no_ai and not study.no_ai:
        study.no_ai, study.ai_error = True, NO_AI_REASON
    study.last_instance_at = now
    if new.priority and (study.priority is None or LEVEL_RANK[new.priority] < LEVEL_RANK[study.priority]):
        study.priority = new.priority
    if study.status == NO_AI_READ and new.status == RECEIVED and not study.no_ai and study.read_at is None:
        study.status, study.ai_error, study.ai_attempts = RECEIVED, None, 0


def _new_instance(new: NewInstance, attrs: DicomAttributes, study_id: int, now: datetime) -> Instance:
    """The instance row of a durably stored object (its storage key, hash and who sent it)."""
    return Instance(
        sop_instance_uid=new.sop_instance_uid,
        study_id=study_id,
        series_uid=new.series_uid,
        sop_class_uid=new.sop_class_uid,
        content_type=new.content_type,
        storage_key=new.storage_key,
        sha256=new.sha256,
        size_bytes=new.size_bytes,
        source=new.source,
        sender=new.sender,
        received_at=now,
        modality=attrs.modality,
        body_part=attrs.body_part,
        view_position=attrs.view_position,
        role=attrs.role,
    )

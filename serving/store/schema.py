"""Tables. A study is the unit of reading (one worklist row); instances are the stored originals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from datasets.vocabulary.statuses import StudyStatus
from models.read import PreRead


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


# Study status (datasets/vocabulary/statuses.py says what each means), as the strings stored.
RECEIVED = StudyStatus.RECEIVED.value
AI_READ = StudyStatus.AI_READ.value
NO_AI_READ = StudyStatus.NO_AI_READ.value
AI_FAILED = StudyStatus.AI_FAILED.value
CLAIMED = StudyStatus.CLAIMED.value
SIGNED = StudyStatus.SIGNED.value
STATUSES = tuple(status.value for status in StudyStatus)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    modality: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(64))  # masked per config
    patient_name: Mapped[str | None] = mapped_column(String(128))  # masked per config
    # Who the patient is for comparisons with priors: a keyed hash (HMAC with the deployment secret) of
    # the site's identity rule (patient ID + issuer by default) made at ingest before masking; None
    # when the rule's fields were missing (then no prior is looked for).
    patient_key: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_sex: Mapped[str | None] = mapped_column(String(8))
    patient_age: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(256))
    arrived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=RECEIVED)
    level: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    ai_read: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ai_error: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(32))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signed_by: Mapped[str | None] = mapped_column(String(128))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    final_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    claim_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    report_status: Mapped[str] = mapped_column(String(16), default="preliminary")  # preliminary|final|amended
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(8))
    # The work queue (serving/store/work.py): a lease on the study by one worker (several ingress
    # replicas share the queue; a lease not renewed for lease_seconds is stale and taken over), the
    # attempts made at the AI read, and when a failed read is tried again (None: no more tries).
    processing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processing_by: Mapped[str | None] = mapped_column(String(64))
    ai_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The patient declined an automated read (PIPL art. 24): no model reads this study.
    no_ai: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # How soon a model replica should read it (critical|urgent|routine; None: decided from the
    # objects), e.g. from a C-STORE request's Priority: kept with the study, so whichever replica
    # leases it reads it with that priority (serving/priority.py).
    priority: Mapped[str | None] = mapped_column(String(16))
    last_instance_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    instances: Mapped[list[Instance]] = relationship(back_populates="study", order_by="Instance.id")

    @property
    def pre_read(self) -> PreRead | None:
        """The AI read as the typed object (models.read.PreRead), or None before there is one."""
        return PreRead.model_validate(self.ai_read) if self.ai_read else None

    __table_args__ = (
        Index("ix_studies_worklist", "status", "level", "arrived_at"),
        Index("ix_studies_queue", "status", "next_attempt_at"),
    )


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # http | stow | scp | ai (our own results)
    sender: Mapped[str | None] = mapped_column(String(128))  # user or calling AE title
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    # "original" for what a site sent; "ai_sr" / "ai_sc" for our result objects in the same study.
    role: Mapped[str] = mapped_column(String(16), default="original")

    study: Mapped[Study] = relationship(back_populates="instances")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))  # argon2
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str]] = mapped_column(JSON, default=list)
    display_name: Mapped[str | None] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Correction(Base):
    """A signed read kept as a training label: who, when, what the AI said, what the doctor said."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    signed_by: Mapped[str] = mapped_column(String(128))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    agree: Mapped[bool] = mapped_column(Boolean)
    ai_findings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    final_findings: Mapped[dict[str, Any]] = mapped_column(JSON)
    impression: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(32))
    amends: Mapped[int | None] = mapped_column(Integer)  # id of the correction an amendment replaces


class AuditEntry(Base):
    """Append-only audit trail; each row carries the hash of the previous one (tamper evidence)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    client: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

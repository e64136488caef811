"""The HTTP API's shapes (pydantic): what clients send and receive. Every route declares one of
these as its ``response_model`` (routes answering files, PNGs, zips or multipart declare their
``response_class`` instead). The read itself is models.read.PreRead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from datasets.vocabulary import TriageLevel
from models.read import Finding, PreRead


class ErrorDetail(BaseModel):
    field: str
    reason: str


# --- health ---------------------------------------------------------------------------------------
class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    problems: list[str]


# --- ECG ingest -----------------------------------------------------------------------------------
class EcgAccepted(BaseModel):
    study_uid: str
    status: str
    duplicate: bool
    level: TriageLevel | None
    score: float | None
    read: PreRead | None
    links: dict[str, str]


# --- worklist and study ---------------------------------------------------------------------------
class WorklistItem(BaseModel):
    study_uid: str
    site: str
    modality: str
    patient_id: str | None
    patient_name: str | None
    patient_sex: str | None
    patient_age: str | None
    arrived_at: datetime
    waiting_minutes: float
    status: str
    ai_level: TriageLevel | None  # the level the AI read gave
    level: TriageLevel  # the level shown after aging escalation
    escalation: str | None  # why the shown level differs, or why a critical is overdue
    overdue: bool
    score: float | None
    top_findings: list[Finding] = []
    model: str | None = None
    triage_reasons: list[str] = []  # why the AI read gave its level (e.g. "heart rate over 150 bpm")
    claimed_by: str | None = None  # who holds a live claim on it (None when free or expired)
    claim_expires_at: datetime | None = None
    report_status: str = "preliminary"  # preliminary | final | amended


class Worklist(BaseModel):
    items: list[WorklistItem]
    count: int  # items on this page
    total: int = 0  # items the same filters hold over all pages
    offset: int = 0
    limit: int = 200
    generated_at: datetime


class InstanceOut(BaseModel):
    sop_instance_uid: str
    content_type: str | None
    size_bytes: int | None
    source: str | None
    received_at: datetime | None


class StudyDetail(BaseModel):
    study_uid: str
    site: str
    modality: str
    status: str
    arrived_at: datetime
    read_at: datetime | None
    patient_id: str | None
    patient_name: str | None
    patient_sex: str | None
    patient_age: str | None
    level: TriageLevel | None
    score: float | None
    ai_read: PreRead | None
    ai_error: str | None
    instances: list[InstanceOut]
    links: dict[str, str] = {}
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    report_status: str = "preliminary"
    final_report: dict[str, Any] | None = None
    signed_by: str | None = None
    signed_at: datetime | None = None


# --- session ----------------------------------------------------------------------------------------
class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=512)


class LoginOut(BaseModel):
    token: str
    token_type: str
    user: str
    display_name: str | None
    role: str
    sites: list[str]
    expires_at: str


class LogoutOut(BaseModel):
    revoked: str


class Me(BaseModel):
    user: str
    role: str
    sites: list[str]
    poll_seconds: float
    claim_minutes: float


# --- reading ----------------------------------------------------------------------------------------
class SignBody(BaseModel):
    agree: bool
    findings: dict[str, bool] = {}
    impression: str = Field("", max_length=10000)


class ClaimOut(BaseModel):
    study_uid: str
    claimed_by: str
    claimed_at: str
    expires_at: str


class ReleaseOut(BaseModel):
    study_uid: str
    released: bool


class SignOut(BaseModel):
    study_uid: str
    report: dict[str, Any]
    links: dict[str, str]


class ReportOut(BaseModel):
    study_uid: str
    status: str
    report_status: str | None
    claimed_by: str | None
    claim_expires_at: str | None
    final_report: dict[str, Any] | None
    history: list[dict[str, Any]]


class EcgSignals(BaseModel):
    study_uid: str
    sampling_rate: float
    original_sampling_rate: float
    units: str
    seconds: float
    leads: dict[str, list[float | None]]


class RefuseAiOut(BaseModel):
    study_uid: str
    status: str
    no_ai: bool
    ai_error: str | None


# --- grassroots ---------------------------------------------------------------------------------------
class ReadSummary(BaseModel):
    level: TriageLevel | None
    findings: list[str]
    preliminary: bool = True


class Submission(BaseModel):
    study_uid: str
    site: str
    modality: str
    patient_id: str | None
    arrived_at: str
    status: str
    ai_level: TriageLevel | None
    report_status: str | None
    preliminary_ai_read: ReadSummary | None
    report: dict[str, Any] | None
    signed_by: str | None
    signed_at: str | None
    links: dict[str, str]


class Submissions(BaseModel):
    items: list[Submission]
    count: int
    total: int = 0
    offset: int = 0


# --- exports and audit --------------------------------------------------------------------------------
class SignedReadsExport(BaseModel):
    rows: list[dict[str, Any]]
    count: int
    deidentified: bool


class ChainCheckOut(BaseModel):
    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str | None


class AuditLog(BaseModel):
    entries: list[dict[str, Any]]
    count: int
    chain: ChainCheckOut


# --- monitoring ---------------------------------------------------------------------------------------
class Monitoring(BaseModel):
    freq: str
    modality: str | None
    sites: list[str] | None
    signed_reads: int
    summary: list[dict[str, Any]]
    agreement: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    bands: dict[str, float]


# --- KServe v2 ----------------------------------------------------------------------------------------
class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool

"""The HTTP API's shapes (pydantic): what clients send and receive."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    field: str
    reason: str


class Finding(BaseModel):
    code: str
    name: str
    probability: float
    threshold: float
    positive: bool


class TriageOut(BaseModel):
    level: Literal["critical", "urgent", "routine"]
    score: float
    reasons: list[str] = []


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
    ai_level: str | None          # the level the AI read gave
    level: str                    # the level shown after aging escalation
    escalation: str | None        # why the shown level differs, or why a critical is overdue
    overdue: bool
    score: float | None
    top_findings: list[Finding] = []
    model: str | None = None
    triage_reasons: list[str] = []        # why the AI read gave its level (e.g. "heart rate over 150 bpm")
    claimed_by: str | None = None         # who holds a live claim on it (None when free or expired)
    claim_expires_at: datetime | None = None
    report_status: str = "preliminary"    # preliminary | final | amended


class Worklist(BaseModel):
    items: list[WorklistItem]
    count: int
    generated_at: datetime


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
    level: str | None
    score: float | None
    ai_read: dict[str, Any] | None
    ai_error: str | None
    instances: list[dict[str, Any]]
    links: dict[str, str] = {}
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    report_status: str = "preliminary"
    final_report: dict[str, Any] | None = None
    signed_by: str | None = None
    signed_at: datetime | None = None


class EcgAccepted(BaseModel):
    study_uid: str
    status: str
    duplicate: bool
    level: str | None
    score: float | None
    read: dict[str, Any] | None
    links: dict[str, str]

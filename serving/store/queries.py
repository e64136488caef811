"""Study queries beyond the core of serving.store.db.Database: which site owns a study, QIDO-RS
search, a clinic's recent submissions, marking a study as not for the AI."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from serving.store.db import Database
from serving.store.schema import AI_FAILED, NO_AI_READ, RECEIVED, Instance, Study


def study_site(db: Database, study_uid: str) -> str | None:
    with db.session() as session:
        return session.scalar(select(Study.site).where(Study.study_uid == study_uid))


def set_no_ai_read(db: Database, study_uid: str, reason: str) -> None:
    with db.session() as session:
        study = session.scalar(select(Study).where(Study.study_uid == study_uid))
        study.ai_error = reason[:2000]
        study.processing_since, study.processing_by = None, None
        if study.status in (RECEIVED, AI_FAILED):
            study.status = NO_AI_READ


def search_studies(
    db: Database,
    sites: Sequence[str] | None,
    *,
    study_uid: str | None = None,
    patient_id: str | None = None,
    modality: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Study]:
    """Studies (with instances) for QIDO-RS. ``modality`` matches any instance's modality."""
    query = select(Study).options(selectinload(Study.instances))
    if sites is not None:
        query = query.where(Study.site.in_(list(sites)))
    if study_uid:
        query = query.where(Study.study_uid.in_(study_uid.split(",")))
    if patient_id:
        query = query.where(Study.patient_id == patient_id)
    if modality:
        values = [m.strip().upper() for m in modality.split(",") if m.strip()]
        query = query.where(
            Study.id.in_(select(Instance.study_id).where(Instance.modality.in_(values))) | Study.modality.in_(values)
        )
    if date_from:
        query = query.where(Study.study_date >= date_from)
    if date_to:
        query = query.where(Study.study_date <= date_to)
    query = query.order_by(Study.arrived_at.desc(), Study.id.desc()).limit(limit).offset(offset)
    with db.session() as session:
        return list(session.scalars(query).all())


def recent_studies(db: Database, sites: Sequence[str] | None, limit: int = 100, offset: int = 0) -> list[Study]:
    """The latest studies of ``sites`` (all when None), newest first: a clinic's submissions, a page
    at a time."""
    query = select(Study)
    if sites is not None:
        query = query.where(Study.site.in_(list(sites)))
    query = query.order_by(Study.arrived_at.desc(), Study.id.desc()).limit(limit).offset(offset)
    with db.session() as session:
        return list(session.scalars(query).all())


def count_studies(db: Database, sites: Sequence[str] | None) -> int:
    """How many studies ``sites`` have (all when None): the total beside a page of submissions."""
    query = select(func.count(Study.id))
    if sites is not None:
        query = query.where(Study.site.in_(list(sites)))
    with db.session() as session:
        return int(session.scalar(query))

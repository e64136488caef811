"""Claim, release and sign on the database: one reader at a time, with a lock that expires.

Every state change is one conditional UPDATE (``... WHERE claimed_by IS NULL OR claim expired``), so
two readers claiming at once on any number of replicas get exactly one winner: the database decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from serving.store.db import Database, as_utc
from serving.store.schema import AI_FAILED, AI_READ, CLAIMED, NO_AI_READ, RECEIVED, SIGNED, Correction, Study, utcnow

CLAIMABLE_STATUSES = (AI_READ, NO_AI_READ, AI_FAILED, CLAIMED, SIGNED, RECEIVED)


class ReadingError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Claim:
    study_uid: str
    claimed_by: str
    claimed_at: datetime
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "claimed_by": self.claimed_by,
            "claimed_at": self.claimed_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


def _db_time(db: Database, value: datetime) -> datetime:
    """SQLite keeps our UTC datetimes as naive strings: compare like with like there."""
    if db.engine.dialect.name == "sqlite":
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def claim_is_live(study: Study, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return bool(study.claimed_by) and study.claim_expires_at is not None and as_utc(study.claim_expires_at) > now


def claim(db: Database, study_uid: str, user: str, minutes: float, now: datetime | None = None) -> Claim:
    """Claim (or refresh one's own claim on) a study. 409 if someone else holds a live claim."""
    now = now or utcnow()
    expires = now + timedelta(minutes=minutes)
    free = or_(
        Study.claimed_by.is_(None),
        Study.claimed_by == user,
        Study.claim_expires_at.is_(None),
        Study.claim_expires_at <= _db_time(db, now),
    )
    # A study still waiting for its AI read keeps status 'received' (the durable queue); a signed
    # one stays signed (a claim there is for an amendment).
    new_status = case((Study.status.in_((RECEIVED, SIGNED)), Study.status), else_=CLAIMED)
    with db.session() as session:
        result = session.execute(
            update(Study)
            .where(and_(Study.study_uid == study_uid, free))
            .values(claimed_by=user, claimed_at=now, claim_expires_at=expires, status=new_status)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            holder = session.execute(
                select(Study.claimed_by, Study.claim_expires_at).where(Study.study_uid == study_uid)
            ).first()
            if holder is None:
                raise ReadingError(404, f"no study {study_uid}")
            until = as_utc(holder[1])
            raise ReadingError(409, f"claimed by {holder[0]} until {until.isoformat() if until else '?'}")
    return Claim(study_uid, user, now, expires)


def _unclaimed_status():
    return case(
        (Study.status != CLAIMED, Study.status),
        (Study.ai_read.is_not(None), AI_READ),
        (Study.ai_error.is_not(None), AI_FAILED),
        else_=NO_AI_READ,
    )


def release(db: Database, study_uid: str, user: str, force: bool = False) -> None:
    """Give a claim back. Only its holder may (or an admin with ``force``); releasing a study nobody
    holds is a no-op."""
    with db.session() as session:
        study = session.scalar(select(Study).where(Study.study_uid == study_uid))
        if study is None:
            raise ReadingError(404, f"no study {study_uid}")
        if study.claimed_by is None:
            return
        if study.claimed_by != user and not force and claim_is_live(study):
            raise ReadingError(409, f"claimed by {study.claimed_by}, not by {user}")
        session.execute(
            update(Study)
            .where(Study.study_uid == study_uid)
            .values(claimed_by=None, claimed_at=None, claim_expires_at=None, status=_unclaimed_status())
            .execution_options(synchronize_session=False)
        )


def ai_findings(study: Study) -> dict[str, Any]:
    """What the AI said (kept beside the reader's signature as the correction's baseline)."""
    read = study.pre_read
    return {
        "findings": {
            f.code: {"probability": f.probability, "positive": f.positive} for f in (read.findings if read else [])
        },
        "measurements": read.measurements if read else {},
        "level": study.level,
        "score": study.score,
    }


def sign(
    db: Database,
    study_uid: str,
    user: str,
    *,
    agree: bool,
    findings: dict[str, bool],
    impression: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Sign the caller's claimed study: the final report (status final; amended when the study was
    signed before) and a correction row (what the AI said, what the doctor said) in one transaction."""
    now = now or utcnow()
    with db.session() as session:
        study = _claimed_study(session, study_uid, user, now)
        ai = ai_findings(study)
        final, agree_effective = _final_findings(ai, findings, agree)
        amending = study.status == SIGNED
        previous = None
        if amending:
            previous = session.scalar(
                select(Correction.id).where(Correction.study_uid == study_uid).order_by(Correction.id.desc()).limit(1)
            )
        report_status = "amended" if amending else "final"
        report = {
            "status": report_status,
            "findings": final,
            "impression": impression,
            "agree": agree_effective,
            "signed_by": user,
            "signed_at": now.isoformat(),
            "ai": {"model": study.model_name, "version": study.model_version, **ai},
        }
        _store_signature(session, db, study_uid, user, now, report)
        session.add(
            Correction(
                study_uid=study_uid,
                signed_by=user,
                signed_at=now,
                agree=agree_effective,
                ai_findings=ai,
                final_findings=final,
                impression=impression,
                model_name=study.model_name,
                model_version=study.model_version,
                amends=previous,
            )
        )
    return report


def _claimed_study(session: Session, study_uid: str, user: str, now: datetime) -> Study:
    """The study ``user`` holds a live claim on (404 no such study, 409 not claimed by them)."""
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        raise ReadingError(404, f"no study {study_uid}")
    if study.claimed_by != user or not claim_is_live(study, now):
        holder = f"it is claimed by {study.claimed_by}" if claim_is_live(study, now) else "nobody holds it"
        raise ReadingError(409, f"claim the study before signing ({holder})")
    return study


def _final_findings(ai: dict[str, Any], findings: dict[str, bool], agree: bool) -> tuple[dict[str, bool], bool]:
    """The signed findings: the AI's calls, overridden code by code by the reader's (422 for a code the AI
    never read); and whether the reader agrees in effect (said so and changed no call)."""
    known = set(ai["findings"])
    unknown = sorted(set(findings) - known) if known else []
    if unknown:
        raise ReadingError(422, f"unknown finding codes {unknown}; known: {sorted(known)}")
    final = {code: bool(v["positive"]) for code, v in ai["findings"].items()}
    final.update({code: bool(value) for code, value in findings.items()})
    agree_effective = agree and all(final.get(c) == v["positive"] for c, v in ai["findings"].items())
    return final, agree_effective


def _store_signature(
    session: Session, db: Database, study_uid: str, user: str, now: datetime, report: dict[str, Any]
) -> None:
    """The study signed with ``report`` and its claim released, conditional on the claim still being ours:
    a claim that expired and was taken over in the meantime makes this update match nothing (409)."""
    result = session.execute(
        update(Study)
        .where(and_(Study.study_uid == study_uid, Study.claimed_by == user, Study.claim_expires_at > _db_time(db, now)))
        .values(
            status=SIGNED,
            signed_by=user,
            signed_at=now,
            final_report=report,
            report_status=report["status"],
            claimed_by=None,
            claimed_at=None,
            claim_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise ReadingError(409, "the claim expired and was taken over before signing")


def corrections(db: Database, study_uid: str | None = None) -> list[Correction]:
    query = select(Correction).order_by(Correction.id)
    if study_uid:
        query = query.where(Correction.study_uid == study_uid)
    with db.session() as session:
        return list(session.scalars(query).all())


def signed_reads(db: Database, sites: list[str] | None = None, limit: int = 10000) -> list[tuple[Correction, Study]]:
    query = (
        select(Correction, Study)
        .join(Study, Study.study_uid == Correction.study_uid)
        .order_by(Correction.id)
        .limit(limit)
    )
    if sites is not None:
        query = query.where(Study.site.in_(sites))
    with db.session() as session:
        return [(c, s) for c, s in session.execute(query).all()]

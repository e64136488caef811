"""GET /api/v1/submissions: what a township clinic sent, with the preliminary AI read and, once
signed, the doctor's report."""

from __future__ import annotations

from fastapi import APIRouter, Request

from models.read import PreRead
from serving.api.deps import PageLimit, PageOffset, SenderDep, ServicesDep, log_action
from serving.api.schemas import ReadSummary, Submission, Submissions
from serving.store.db import as_utc
from serving.store.queries import count_studies, recent_studies
from serving.store.schema import SIGNED

router = APIRouter(tags=["grassroots"])


@router.get("/api/v1/submissions", response_model=Submissions)
def submissions(
    request: Request,
    svc: ServicesDep,
    who: SenderDep,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Submissions:
    studies = recent_studies(svc.db, who.site_scope(), limit, offset)
    items = [
        Submission(
            study_uid=s.study_uid,
            site=s.site,
            modality=s.modality,
            patient_id=s.patient_id,
            arrived_at=as_utc(s.arrived_at).isoformat(),
            status=s.status,
            ai_level=s.level,
            report_status=s.report_status if s.status == SIGNED else "preliminary",
            preliminary_ai_read=_summary(s.pre_read),
            report=s.final_report if s.status == SIGNED else None,
            signed_by=s.signed_by,
            signed_at=as_utc(s.signed_at).isoformat() if s.signed_at else None,
            links={"study": f"/api/v1/studies/{s.study_uid}", "fhir": f"/fhir/DiagnosticReport?study={s.study_uid}"},
        )
        for s in studies
    ]
    log_action(svc, request, who, "view_submissions", count=len(items))
    return Submissions(items=items, count=len(items), total=count_studies(svc.db, who.site_scope()), offset=offset)


def _summary(read: PreRead | None) -> ReadSummary | None:
    if read is None:
        return None
    return ReadSummary(level=read.triage.level, findings=[f.code for f in read.positive_findings()])

"""The prioritized worklist and one study's detail."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request

from datasets.vocabulary import TriageLevel
from serving.api.deps import PageLimit, PageOffset, ReaderDep, ServicesDep, ViewerDep, client_of, log_view, study_for
from serving.api.schemas import InstanceOut, StudyDetail, Worklist, WorklistItem
from serving.services import Services
from serving.store import audit
from serving.store.claims import claim_is_live
from serving.store.db import WorklistFilters, as_utc
from serving.store.schema import Study, utcnow

router = APIRouter(tags=["worklist"])


@router.get("/api/v1/worklist", response_model=Worklist)
def worklist(
    request: Request,
    svc: ServicesDep,
    who: ReaderDep,
    site: str | None = None,
    modality: str | None = None,
    status: str | None = Query(None, description="comma-separated statuses"),
    level: TriageLevel | None = Query(None),
    limit: PageLimit = 200,
    offset: PageOffset = 0,
) -> Worklist:
    if site and not who.can_access_site(site):
        raise HTTPException(403, f"user {who.user!r} may not see site {site!r}")
    now = utcnow()
    filters = WorklistFilters(
        modality=modality,
        level=level.value if level else None,
        site=site,
        statuses=status.split(",") if status else None,
    )
    studies = svc.db.worklist(who.site_scope(), svc.aging, now, limit=limit, offset=offset, **filters)
    total = svc.db.worklist_total(who.site_scope(), svc.aging, now, **filters)
    items = [_worklist_item(s, svc, now) for s in studies]
    # The page polls every few seconds: repeats of the same view are aggregated per window.
    log_view(
        svc,
        request,
        who,
        "view_worklist",
        limit=limit,
        offset=offset,
        filters={"site": site, "modality": modality, "status": status, "level": level.value if level else None},
    )
    return Worklist(items=items, count=len(items), total=total, offset=offset, limit=limit, generated_at=now)


@router.get("/api/v1/studies/{study_uid}", response_model=StudyDetail)
def study_detail(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> StudyDetail:
    study = study_for(svc, who, study_uid)
    audit.record(
        svc.db,
        "view_study",
        user=who.user,
        role=who.role,
        study_uid=study_uid,
        client=client_of(request),
        detail={"path": request.url.path},
    )
    live = claim_is_live(study)
    return StudyDetail(
        study_uid=study.study_uid,
        site=study.site,
        modality=study.modality,
        status=study.status,
        arrived_at=as_utc(study.arrived_at),
        read_at=as_utc(study.read_at),
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        patient_sex=study.patient_sex,
        patient_age=study.patient_age,
        level=study.level,
        score=study.score,
        ai_read=study.pre_read,
        ai_error=study.ai_error,
        instances=[
            InstanceOut(
                sop_instance_uid=i.sop_instance_uid,
                content_type=i.content_type,
                size_bytes=i.size_bytes,
                source=i.source,
                received_at=as_utc(i.received_at),
            )
            for i in study.instances
        ],
        links=_study_links(study),
        claimed_by=study.claimed_by if live else None,
        claim_expires_at=as_utc(study.claim_expires_at) if live else None,
        report_status=study.report_status or "preliminary",
        final_report=study.final_report,
        signed_by=study.signed_by,
        signed_at=as_utc(study.signed_at),
    )


def _study_links(study: Study) -> dict[str, str]:
    base = f"/api/v1/studies/{study.study_uid}"
    links = {
        "self": base,
        "fhir": f"/fhir/DiagnosticReport?study={study.study_uid}",
        "report": f"{base}/report",
        "claim": f"{base}/claim",
        "release": f"{base}/release",
        "sign": f"{base}/sign",
    }
    if study.modality == "ECG":
        links["ecg"] = f"{base}/ecg"
    else:
        links["image"] = f"{base}/image.png"
        links["heatmap"] = f"{base}/heatmap.png"
    return links


def _worklist_item(study: Study, svc: Services, now: datetime) -> WorklistItem:
    arrived = as_utc(study.arrived_at)
    shown, reason, overdue = svc.aging.effective(study.level, arrived, now)
    read = study.pre_read
    findings = sorted(read.positive_findings(), key=lambda f: -f.probability)[:3] if read else []
    model = None
    if study.model_name:
        model = f"{study.model_name} v{study.model_version}"
    live = claim_is_live(study, now)
    return WorklistItem(
        study_uid=study.study_uid,
        site=study.site,
        modality=study.modality,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        patient_sex=study.patient_sex,
        patient_age=study.patient_age,
        arrived_at=arrived,
        waiting_minutes=round((now - arrived).total_seconds() / 60.0, 1),
        status=study.status,
        ai_level=study.level,
        level=shown,
        escalation=reason,
        overdue=overdue,
        score=study.score,
        top_findings=findings,
        model=model,
        triage_reasons=list(read.triage.reasons) if read else [],
        claimed_by=study.claimed_by if live else None,
        claim_expires_at=as_utc(study.claim_expires_at) if live else None,
        report_status=study.report_status or "preliminary",
    )

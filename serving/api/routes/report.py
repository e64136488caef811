"""The printed report: ``GET /api/v1/studies/{uid}/report.pdf`` once a doctor has signed (409 with the
reason before), in the deployment's locale unless ``?locale=`` asks for another one. Built by
serving/results/report_pdf.py from the typed read and the signed report; the FHIR DiagnosticReport
points at it (presentedForm)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from datasets.vocabulary import i18n
from serving.api.deps import ServicesDep, ViewerDep, log_action, study_for
from serving.api.routes.reading import ecg_display_signals, render_png
from serving.auth.users import get_user
from serving.results.report_pdf import EcgTracing, ReportSubject, SignedReport, build_report_pdf
from serving.services import Services
from serving.store.db import as_utc
from serving.store.schema import SIGNED, Study

router = APIRouter(tags=["reading"])


def signed_report(svc: Services, study: Study) -> SignedReport:
    final = study.final_report or {}
    user = get_user(svc.db, study.signed_by) if study.signed_by else None
    reader = (user.display_name if user is not None else None) or study.signed_by or "?"
    return SignedReport(
        reader=reader,
        signed_at=as_utc(study.signed_at),
        impression=final.get("impression") or "",
        agree=bool(final.get("agree", True)),
        findings=final.get("findings") or {},
        status=study.report_status,
    )


def report_subject(svc: Services, study: Study) -> ReportSubject:
    # the name as stored: masked at ingest when the privacy config says so
    return ReportSubject(
        site=study.site,
        study_uid=study.study_uid,
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        patient_sex=study.patient_sex,
        patient_age=study.patient_age,
        study_date=study.study_date,
        arrived_at=as_utc(study.arrived_at),
    )


def report_pdf_bytes(svc: Services, study: Study, locale: str | None = None) -> bytes:
    """The signed report of ``study`` as PDF bytes (the caller checked it is signed)."""
    read = study.pre_read
    if read is None:
        raise HTTPException(409, "this study has no AI read to print with the report")
    tracing, film = None, None
    if study.modality == "ECG":
        signals = ecg_display_signals(svc, study)
        tracing = EcgTracing(sampling_rate=signals.sampling_rate, leads=signals.leads)
    else:
        film = render_png(svc, study, "original")[0]
    return build_report_pdf(
        read,
        signed_report(svc, study),
        report_subject(svc, study),
        locale=locale or svc.config.locale,
        tracing=tracing,
        film_png=film,
    )


@router.get(
    "/api/v1/studies/{study_uid}/report.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, 409: {"description": "not signed yet"}},
)
def report_pdf(
    study_uid: str,
    request: Request,
    svc: ServicesDep,
    who: ViewerDep,
    locale: str | None = Query(None, description="BCP 47 tag (zh-CN, en); default: the deployment's"),
) -> Response:
    study = study_for(svc, who, study_uid)
    if study.status != SIGNED or study.report_status not in ("final", "amended"):
        raise HTTPException(409, "the report is not signed yet: the printable report exists once a doctor signs it")
    try:
        chosen = i18n.normalize_locale(locale or svc.config.locale)
    except i18n.UnknownLocale as exc:
        raise HTTPException(404, str(exc)) from exc
    pdf = report_pdf_bytes(svc, study, chosen)
    log_action(svc, request, who, "view_report_pdf", study_uid, locale=chosen)
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="report-{study_uid}.pdf"'}
    )

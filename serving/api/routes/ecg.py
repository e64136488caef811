"""POST /api/v1/ecg: one ECG in (a DICOM 12-lead waveform, a WFDB zip or JSON), stored durably,
read at once, answered with its read (serving/ingest/ecg.py does the work)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from datasets.ecg.errors import EcgInputError
from serving import metrics
from serving.api.deps import SenderDep, ServicesDep, enforce_rate_limit, only_site, read_body
from serving.api.schemas import EcgAccepted
from serving.auth.tokens import Principal
from serving.ingest.ecg import AcceptedEcg, SiteError
from serving.priority import PriorityError, parse_priority, request_priority
from serving.services import Services
from serving.store.schema import RECEIVED

router = APIRouter(tags=["ecg"])


@router.post(
    "/api/v1/ecg",
    response_model=EcgAccepted,
    status_code=201,
    responses={200: {"model": EcgAccepted}, 413: {}, 415: {}, 422: {}, 503: {}},
)
async def post_ecg(
    request: Request,
    svc: ServicesDep,
    who: SenderDep,
    site: str | None = Query(None),
    no_ai: bool = Query(
        False,
        description="the patient declined an automated pre-read: stored and listed for a doctor, never read by a model",
    ),
    priority: str | None = Query(
        None,
        description="critical, urgent or routine (default): "
        "how soon the model replica should read it (serving/priority.py)",
    ),
) -> JSONResponse:
    started = time.perf_counter()
    early_site = site or only_site(who)
    if early_site:  # before the body is read: a flooding site costs us as little as possible
        enforce_rate_limit(svc, early_site)
    try:  # [priority] checked before anything is read or stored
        priority = parse_priority(priority)
    except PriorityError as exc:
        raise HTTPException(422, detail={"field": "priority", "reason": str(exc)}) from exc
    limit = svc.config.limits.max_ecg_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"ECG body of {declared} bytes exceeds the limit of {limit} bytes")
    body, content_type, filename, form_site = await _read_upload(request, limit)
    try:
        record = svc.ecg.parse(body, content_type, filename)
    except EcgInputError as exc:
        metrics.REJECTED.labels("ECG", exc.field).inc()
        return JSONResponse({"detail": {"field": exc.field, "reason": exc.reason}}, status_code=422)
    site = _sending_site(who, site or form_site or record.meta.get("site"))
    if site != early_site:
        enforce_rate_limit(svc, site)
    try:
        accepted = svc.ecg.accept(body, record, site, sender=who.user, no_ai=no_ai)
    except SiteError as exc:
        raise HTTPException(exc.status, detail={"field": "site", "reason": exc.reason}) from exc
    if accepted.created:
        metrics.INGESTED.labels("ECG", "http").inc()
    if accepted.created or accepted.study.status == RECEIVED:
        await _read_now(svc, accepted, priority, started)
    study = svc.db.get_study(accepted.study.study_uid)
    body_out = EcgAccepted(
        study_uid=study.study_uid,
        status=study.status,
        duplicate=not accepted.created,
        level=study.level,
        score=study.score,
        read=study.ai_read,
        links={"study": f"/api/v1/studies/{study.study_uid}"},
    )
    return JSONResponse(body_out.model_dump(mode="json"), status_code=201 if accepted.created else 200)


def _sending_site(who: Principal, named: str | None) -> str:
    """The site the ECG is sent for: named (query, form or the record itself) or the caller's only one;
    422 when none, 403 when the caller may not send for it."""
    site = named or only_site(who)
    if not site:
        raise HTTPException(422, detail={"field": "site", "reason": "say which site sent this ECG (?site=...)"})
    if not who.can_access_site(site):
        raise HTTPException(403, f"user {who.user!r} may not send for site {site!r}")
    return site


async def _read_now(svc: Services, accepted: AcceptedEcg, priority: str | None, started: float) -> None:
    """The pre-read of an accepted ECG, at once and at the sender's priority; counted as read or failed."""
    with request_priority(priority):  # [priority] the model replica serves critical first
        read = await svc.ecg.read_accepted(accepted)
    if read is not None:
        metrics.AI_READS.labels("ECG", read.triage.level).inc()
        metrics.READ_SECONDS.labels("ECG").observe(time.perf_counter() - started)
    elif accepted.created and not accepted.study.no_ai:
        metrics.AI_FAILURES.labels("ECG").inc()


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str | None, str | None, str | None]:
    """The ECG bytes from a raw body (application/dicom, application/zip, application/json) or from
    a multipart form's first file. Reads at most ``limit`` + 1 bytes before refusing."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = next((v for v in form.values() if hasattr(v, "read")), None)
        if upload is None:
            raise HTTPException(422, detail={"field": "file", "reason": "multipart form has no file part"})
        body = await upload.read(limit + 1)
        site = form.get("site")
        ctype, name = upload.content_type, upload.filename
    else:
        body, site, ctype, name = await read_body(request, limit, "ECG"), None, content_type or None, None
    if len(body) > limit:
        raise HTTPException(413, f"ECG body exceeds the limit of {limit} bytes")
    if not body:
        raise HTTPException(422, detail={"field": "file", "reason": "empty body"})
    return body, ctype, name, (str(site) if site else None)

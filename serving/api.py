"""The HTTP API (FastAPI). Routes are thin: they authenticate, call the workflow and the store,
and shape the answer. ``build_api`` takes a function returning the replica's Services, so the same
routes run inside the Ray Serve ingress and in-process."""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Callable, Sequence

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from datasets.ecg.errors import EcgInputError
from serving import metrics
from serving.auth import Principal
from serving.deps import ApiDeps
from serving.ecg_workflow import SiteError
from serving.priority import PriorityError, parse_priority, request_priority
from serving.ratelimit import limiter_for
from serving.request_encoding import RequestDecompression
from serving.schemas import EcgAccepted, StudyDetail, Worklist, WorklistItem
from serving.services import Services
from serving.storage import StorageUnavailable
from serving.store.db import as_utc
from serving.store.schema import RECEIVED, Study, utcnow
from serving.worklist import audit
from serving.worklist.reading import claim_is_live

log = logging.getLogger("preread.api")


def build_api(get_services: Callable[[], Services | None], extra_routers: Sequence[Callable] | None = None) -> FastAPI:
    app = FastAPI(title="preread", version="0.1.0",
                  description="AI pre-read service: ECGs and X-rays in, triaged preliminary reads out.")

    deps = ApiDeps(get_services)
    services = deps.services()
    require = deps.require

    # --- refuse rather than half-accept -----------------------------------------------------------
    # The database or the object store is down: 503 with the reason, never a 500, and nothing was
    # acknowledged (ingest stores the object and commits its row before it answers 2xx).
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": {"reason": "database unavailable: nothing was stored or changed; "
                                                  "try again later", "error": type(exc).__name__}},
                            status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.error("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": {"reason": "storage unavailable: nothing was stored; try again later"}},
                            status_code=503, headers={"Retry-After": "30"})

    def inflated_limit() -> int:  # gzip/deflate request bodies: inflated no larger than any route accepts
        svc = get_services()
        return 1024**3 if svc is None else max(svc.config.dicom.max_stow_bytes, svc.config.limits.max_ecg_bytes)

    app.add_middleware(RequestDecompression, max_bytes=inflated_limit)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUESTS.labels(getattr(route, "path", "unmatched"), request.method, str(response.status_code)).inc()
        return response

    # --- health ---------------------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        svc = get_services()
        problems = []
        if svc is None:
            problems.append("service starting")
        else:
            try:
                svc.db.ping()
            except Exception as exc:  # report, don't crash: readiness is a question
                problems.append(f"database unreachable: {type(exc).__name__}")
            if not svc.store.writable():
                problems.append("object store not writable")
            problems += [f"model {name} not loaded" for name, ok in svc.models_ready.items() if not ok]
        status = 200 if not problems else 503
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.REGISTRY).decode(), media_type="text/plain; version=0.0.4")

    # --- ECG ingest -----------------------------------------------------------------------------
    @app.post("/api/v1/ecg", response_model=EcgAccepted, status_code=201,
              responses={413: {}, 415: {}, 422: {}, 503: {}})
    async def post_ecg(request: Request, site: str | None = Query(None),
                       no_ai: bool = Query(False, description="the patient declined an automated pre-read: "
                                                              "stored and listed for a doctor, never read by a model"),
                       priority: str | None = Query(None, description="critical, urgent or routine (default): "
                                                    "how soon the model replica should read it (serving/priority.py)"),
                       svc: Services = Depends(services),
                       who: Principal = Depends(require("grassroots", "admin"))) -> JSONResponse:
        started = time.perf_counter()
        early_site = site or _only_site(who)
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
        site = site or form_site or record.meta.get("site") or _only_site(who)
        if not site:
            raise HTTPException(422, detail={"field": "site", "reason": "say which site sent this ECG (?site=...)"})
        if not who.can_access_site(site):
            raise HTTPException(403, f"user {who.user!r} may not send for site {site!r}")
        if site != early_site:
            enforce_rate_limit(svc, site)
        try:
            accepted = svc.ecg.accept(body, record, site, sender=who.user, no_ai=no_ai)
        except SiteError as exc:
            raise HTTPException(exc.status, detail={"field": "site", "reason": exc.reason}) from exc
        study = accepted.study
        read = study.ai_read
        if accepted.created:
            metrics.INGESTED.labels("ECG", "http").inc()
        if accepted.created or study.status == RECEIVED:
            with request_priority(priority):  # [priority] the model replica serves critical first
                read = await svc.ecg.read_accepted(accepted)
            if read is not None:
                metrics.AI_READS.labels("ECG", read["triage"]["level"]).inc()
                metrics.READ_SECONDS.labels("ECG").observe(time.perf_counter() - started)
            elif accepted.created and not study.no_ai:
                metrics.AI_FAILURES.labels("ECG").inc()
        study = svc.db.get_study(study.study_uid)
        body_out = EcgAccepted(
            study_uid=study.study_uid, status=study.status, duplicate=not accepted.created,
            level=study.level, score=study.score, read=study.ai_read,
            links={"study": f"/api/v1/studies/{study.study_uid}"},
        )
        return JSONResponse(body_out.model_dump(mode="json"), status_code=201 if accepted.created else 200)

    # --- worklist -------------------------------------------------------------------------------
    @app.get("/api/v1/worklist", response_model=Worklist)
    def worklist(site: str | None = None, modality: str | None = None,
                 status: str | None = Query(None, description="comma-separated statuses"),
                 level: str | None = Query(None, pattern="^(critical|urgent|routine)$"),
                 limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0),
                 request: Request = None, svc: Services = Depends(services),
                 who: Principal = Depends(require("reader", "grassroots", "admin"))) -> Worklist:
        if site and not who.can_access_site(site):
            raise HTTPException(403, f"user {who.user!r} may not see site {site!r}")
        now = utcnow()
        studies = svc.db.worklist(who.site_scope(), svc.aging, now, modality=modality, level=level, site=site,
                                  statuses=status.split(",") if status else None, limit=limit, offset=offset)
        items = [_worklist_item(s, svc, now) for s in studies]
        # The page polls every few seconds: repeats of the same view are aggregated per window.
        audit.record_view(svc.db, "view_worklist", svc.config.audit.view_window_seconds, user=who.user,
                          role=who.role, client=_client(request),
                          detail={"path": request.url.path, "limit": limit, "offset": offset,
                                  "filters": {"site": site, "modality": modality, "status": status, "level": level}})
        return Worklist(items=items, count=len(items), generated_at=now)

    @app.get("/api/v1/studies/{study_uid}", response_model=StudyDetail)
    def study_detail(study_uid: str, request: Request, svc: Services = Depends(services),
                     who: Principal = Depends(require("reader", "grassroots", "admin"))) -> StudyDetail:
        study = svc.db.get_study(study_uid)
        if study is None or not who.can_access_site(study.site):
            raise HTTPException(404, f"no study {study_uid} for this user")  # do not reveal other sites' studies
        audit.record(svc.db, "view_study", user=who.user, role=who.role, study_uid=study_uid,
                     client=_client(request), detail={"path": request.url.path})
        live = claim_is_live(study)
        return StudyDetail(
            study_uid=study.study_uid, site=study.site, modality=study.modality, status=study.status,
            arrived_at=as_utc(study.arrived_at), read_at=as_utc(study.read_at),
            patient_id=study.patient_id, patient_name=study.patient_name, patient_sex=study.patient_sex,
            patient_age=study.patient_age, level=study.level, score=study.score, ai_read=study.ai_read,
            ai_error=study.ai_error,
            instances=[{"sop_instance_uid": i.sop_instance_uid, "content_type": i.content_type,
                        "size_bytes": i.size_bytes, "source": i.source, "received_at": as_utc(i.received_at)}
                       for i in study.instances],
            links=_study_links(study),
            claimed_by=study.claimed_by if live else None,
            claim_expires_at=as_utc(study.claim_expires_at) if live else None,
            report_status=study.report_status or "preliminary", final_report=study.final_report,
            signed_by=study.signed_by, signed_at=as_utc(study.signed_at),
        )

    from serving.routers import router_builders

    for build_router in (router_builders() if extra_routers is None else extra_routers):
        app.include_router(build_router(deps))
    return app


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _study_links(study: Study) -> dict[str, str]:
    base = f"/api/v1/studies/{study.study_uid}"
    links = {"self": base, "fhir": f"/fhir/DiagnosticReport?study={study.study_uid}", "report": f"{base}/report",
             "claim": f"{base}/claim", "release": f"{base}/release", "sign": f"{base}/sign"}
    if study.modality == "ECG":
        links["ecg"] = f"{base}/ecg"
    else:
        links["image"] = f"{base}/image.png"
        links["heatmap"] = f"{base}/heatmap.png"
    return links


def enforce_rate_limit(svc: Services, site: str, kind: str = "http") -> None:
    """429 with Retry-After when ``site`` is over its ingest rate (serving/ratelimit.py)."""
    wait = limiter_for(svc, kind).check(site)
    if wait > 0:
        metrics.REJECTED.labels(kind.upper(), "rate_limit").inc()
        raise HTTPException(429, detail={"field": "site", "reason": f"site {site!r} is over its ingest rate limit; "
                                                                    f"retry in {math.ceil(wait)} s"},
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})


def _only_site(who: Principal) -> str | None:
    return who.sites[0] if len(who.sites) == 1 and who.sites[0] != "*" else None


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
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"ECG body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body, site, ctype, name = b"".join(chunks), None, content_type or None, None
    if len(body) > limit:
        raise HTTPException(413, f"ECG body exceeds the limit of {limit} bytes")
    if not body:
        raise HTTPException(422, detail={"field": "file", "reason": "empty body"})
    return body, ctype, name, (str(site) if site else None)


def _worklist_item(study: Study, svc: Services, now: datetime) -> WorklistItem:
    arrived = as_utc(study.arrived_at)
    shown, reason, overdue = svc.aging.effective(study.level, arrived, now)
    findings = []
    if study.ai_read:
        findings = sorted((f for f in study.ai_read.get("findings", []) if f.get("positive")),
                          key=lambda f: -f["probability"])[:3]
    model = None
    if study.model_name:
        model = f"{study.model_name} v{study.model_version}"
    return WorklistItem(
        study_uid=study.study_uid, site=study.site, modality=study.modality,
        patient_id=study.patient_id, patient_name=study.patient_name, patient_sex=study.patient_sex,
        patient_age=study.patient_age, arrived_at=arrived,
        waiting_minutes=round((now - arrived).total_seconds() / 60.0, 1), status=study.status,
        ai_level=study.level, level=shown, escalation=reason, overdue=overdue, score=study.score,
        top_findings=findings, model=model,
        triage_reasons=list(((study.ai_read or {}).get("triage") or {}).get("reasons") or []),
        claimed_by=study.claimed_by if claim_is_live(study, now) else None,
        claim_expires_at=as_utc(study.claim_expires_at) if claim_is_live(study, now) else None,
        report_status=study.report_status or "preliminary",
    )

"""HTTP routes of the reading worklist: login/logout, claim/release/sign, the ECG and image views,
the grassroots submissions view, de-identified exports, the audit trail, FHIR, and the web page.

No `from __future__ import annotations` here: under Ray Serve the route closures reach the replica
pickled by value, and string annotations (``Request``, ``Principal``) would not resolve there."""

import io
import math
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from datasets.ecg.errors import EcgInputError
from serving.auth import Principal
from serving.deps import ApiDeps
from serving.services import Services
from serving.store.db import as_utc
from serving.store.schema import SIGNED, Study, utcnow
from serving.worklist import audit, reading, users
from serving.worklist.fhir import diagnostic_report

WEB = Path(__file__).resolve().parents[1] / "web"
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
ECG_DISPLAY_HZ = 250.0


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=512)


class SignBody(BaseModel):
    agree: bool
    findings: dict[str, bool] = {}
    impression: str = Field("", max_length=10000)


def initial_passwords_file(cfg) -> Path:
    """Where generated bootstrap passwords are written (0600, beside the token secret; never logged)."""
    return Path(cfg.auth.secret_file).parent / "initial-passwords.txt"


def client_of(request: Request) -> str:
    host = request.client.host if request.client else "?"
    forwarded = request.headers.get("x-forwarded-for")
    return f"{host} via {forwarded.split(',')[0].strip()}"[:64] if forwarded else host


def log_action(svc: Services, request: Request, who: Principal | None, action: str,
               study_uid: str | None = None, **detail: Any) -> None:
    audit.record(svc.db, action, user=who.user if who else detail.pop("user", None),
                 role=who.role if who else None, study_uid=study_uid,
                 detail={"path": request.url.path, "method": request.method, **detail}, client=client_of(request))


def build_router(deps: ApiDeps) -> APIRouter:
    @asynccontextmanager
    async def lifespan(_app):
        svc = deps.get_services()
        if svc is not None:  # under Ray the replica's services may come later: login bootstraps then
            bootstrap(svc)
        yield

    router = APIRouter(lifespan=lifespan)
    services = deps.services()
    anyone = deps.principal()
    readers = deps.require("reader", "admin")
    viewers = deps.require("reader", "grassroots", "admin")

    def study_for(svc: Services, who: Principal, study_uid: str) -> Study:
        study = svc.db.get_study(study_uid)
        if study is None or not who.can_access_site(study.site):
            raise HTTPException(404, f"no study {study_uid} for this user")  # other sites' studies do not exist
        return study

    def bootstrap(svc: Services) -> None:
        users.ensure_bootstrap_users(svc.db, svc.config.auth.users, initial_passwords_file(svc.config))

    # --- login -----------------------------------------------------------------------------------
    @router.post("/api/v1/login", tags=["auth"])
    def login(body: LoginBody, request: Request, svc: Services = Depends(services)) -> dict:
        bootstrap(svc)
        try:
            user = users.authenticate(svc.db, body.username, body.password)
        except users.LoginFailed:
            audit.record(svc.db, "login_failed", user=body.username[:128], detail={"path": request.url.path},
                         client=client_of(request))
            raise HTTPException(401, "unknown user or wrong password")
        ttl = timedelta(hours=svc.config.auth.login_ttl_hours)
        sites = list(user.sites or []) or (["*"] if user.role == "admin" else [])
        token = svc.tokens.issue(user.username, user.role, sites, ttl=ttl)
        audit.record(svc.db, "login", user=user.username, role=user.role, detail={"path": request.url.path},
                     client=client_of(request))
        return {"token": token, "token_type": "bearer", "user": user.username, "display_name": user.display_name,
                "role": user.role, "sites": sites, "expires_at": (utcnow() + ttl).isoformat()}

    @router.post("/api/v1/logout", tags=["auth"])
    def logout(request: Request, svc: Services = Depends(services), who: Principal = Depends(anyone)) -> dict:
        longest = max(svc.config.auth.token_ttl_hours, svc.config.auth.login_ttl_hours)
        users.revoke(svc.db, who.token_id, utcnow() + timedelta(hours=longest))
        log_action(svc, request, who, "logout")
        return {"revoked": who.token_id}

    @router.get("/api/v1/me", tags=["auth"])
    def me(svc: Services = Depends(services), who: Principal = Depends(anyone)) -> dict:
        return {"user": who.user, "role": who.role, "sites": list(who.sites),
                "poll_seconds": svc.config.worklist.poll_seconds, "claim_minutes": svc.config.worklist.claim_minutes}

    # --- reading ---------------------------------------------------------------------------------
    def reading_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except reading.ReadingError as exc:
            raise HTTPException(exc.status, exc.reason) from exc

    @router.post("/api/v1/studies/{study_uid}/claim", tags=["reading"])
    def claim(study_uid: str, request: Request, svc: Services = Depends(services),
              who: Principal = Depends(readers)) -> dict:
        study_for(svc, who, study_uid)
        try:
            held = reading.claim(svc.db, study_uid, who.user, svc.config.worklist.claim_minutes)
        except reading.ReadingError as exc:
            log_action(svc, request, who, "claim_refused", study_uid, reason=exc.reason)
            raise HTTPException(exc.status, exc.reason) from exc
        log_action(svc, request, who, "claim", study_uid, expires_at=held.expires_at.isoformat())
        return held.as_dict()

    @router.post("/api/v1/studies/{study_uid}/release", tags=["reading"])
    def release(study_uid: str, request: Request, svc: Services = Depends(services),
                who: Principal = Depends(readers)) -> dict:
        study_for(svc, who, study_uid)
        reading_call(reading.release, svc.db, study_uid, who.user, force=who.role == "admin")
        log_action(svc, request, who, "release", study_uid)
        return {"study_uid": study_uid, "released": True}

    @router.post("/api/v1/studies/{study_uid}/sign", tags=["reading"])
    def sign(study_uid: str, body: SignBody, request: Request, svc: Services = Depends(services),
             who: Principal = Depends(readers)) -> dict:
        study_for(svc, who, study_uid)
        report = reading_call(reading.sign, svc.db, study_uid, who.user, agree=body.agree,
                              findings=body.findings, impression=body.impression)
        log_action(svc, request, who, "sign", study_uid, report_status=report["status"], agree=report["agree"])
        return {"study_uid": study_uid, "report": report,
                "links": {"fhir": f"/fhir/DiagnosticReport?study={study_uid}"}}

    @router.get("/api/v1/studies/{study_uid}/report", tags=["reading"])
    def report(study_uid: str, request: Request, svc: Services = Depends(services),
               who: Principal = Depends(viewers)) -> dict:
        study = study_for(svc, who, study_uid)
        history = [{"signed_by": c.signed_by, "signed_at": as_utc(c.signed_at).isoformat(), "agree": c.agree,
                    "final_findings": c.final_findings, "impression": c.impression, "amends": c.amends}
                   for c in reading.corrections(svc.db, study_uid)]
        log_action(svc, request, who, "view_report", study_uid)
        return {"study_uid": study_uid, "status": study.status, "report_status": study.report_status,
                "claimed_by": study.claimed_by if reading.claim_is_live(study) else None,
                "claim_expires_at": as_utc(study.claim_expires_at).isoformat() if reading.claim_is_live(study) else None,
                "final_report": study.final_report, "history": history}

    # --- what a reader looks at ------------------------------------------------------------------
    @router.get("/api/v1/studies/{study_uid}/ecg", tags=["reading"])
    def ecg_signals(study_uid: str, request: Request, svc: Services = Depends(services),
                    who: Principal = Depends(viewers)) -> dict:
        study = study_for(svc, who, study_uid)
        if study.modality != "ECG":
            raise HTTPException(404, f"study {study_uid} is not an ECG")
        original = next((i for i in study.instances if (i.role or "original") == "original"), None)
        if original is None:
            raise HTTPException(404, "the ECG original is not stored")
        try:
            record = svc.ecg.parse(svc.store.get(original.storage_key), original.content_type, None)
        except (EcgInputError, OSError) as exc:
            raise HTTPException(422, f"stored ECG cannot be read: {exc}") from exc
        fs = float(record.sampling_rate)
        step = max(1, int(round(fs / ECG_DISPLAY_HZ)))
        signals = np.asarray(record.signals, dtype=np.float64)[:, ::step]
        leads = {}
        for name, row in zip(record.leads, signals):
            leads[name] = [None if not math.isfinite(v) else round(float(v), 3) for v in row]
        log_action(svc, request, who, "view_ecg", study_uid)
        return {"study_uid": study_uid, "sampling_rate": fs / step, "original_sampling_rate": fs,
                "units": "mV", "seconds": signals.shape[1] * step / fs, "leads": leads}

    def image_response(svc: Services, study: Study, role: str, window: float | None = None, level: float | None = None) -> Response:
        inst = next((i for i in study.instances if (i.role or "original") == role), None)
        if inst is None:
            raise HTTPException(404, f"no {'image' if role == 'original' else 'heatmap'} for study {study.study_uid} yet")
        try:
            data = svc.store.get(inst.storage_key)
        except OSError as exc:
            raise HTTPException(404, "object missing from the store") from exc
        if inst.content_type == "image/png" and window is None:
            # PNGs are windowed as 8-bit grey (see _to_png): the viewer's sliders start there
            return Response(data, media_type="image/png", headers={"X-Window-Width": "256", "X-Window-Center": "128"})
        try:
            png, used = _to_png(data, inst.content_type, window, level)
        except Exception as exc:  # an object we cannot render is a 404 for the viewer, not a crash
            raise HTTPException(404, f"cannot render {inst.content_type}: {type(exc).__name__}") from exc
        # the window actually applied, in the image's own units, so the viewer's sliders can start from it
        headers = {"X-Window-Width": f"{used[0]:g}", "X-Window-Center": f"{used[1]:g}"} if used else {}
        return Response(png, media_type="image/png", headers=headers)

    @router.get("/api/v1/studies/{study_uid}/image.png", tags=["reading"])
    def image(study_uid: str, request: Request, window: float | None = Query(None, gt=0),
              level: float | None = None, svc: Services = Depends(services),
              who: Principal = Depends(viewers)) -> Response:
        study = study_for(svc, who, study_uid)
        out = image_response(svc, study, "original", window, level)
        log_action(svc, request, who, "view_image", study_uid)
        return out

    @router.get("/api/v1/studies/{study_uid}/heatmap.png", tags=["reading"])
    def heatmap(study_uid: str, request: Request, svc: Services = Depends(services),
                who: Principal = Depends(viewers)) -> Response:
        study = study_for(svc, who, study_uid)
        out = image_response(svc, study, "ai_sc")
        log_action(svc, request, who, "view_heatmap", study_uid)
        return out

    # --- grassroots ------------------------------------------------------------------------------
    @router.get("/api/v1/submissions", tags=["grassroots"])
    def submissions(request: Request, limit: int = Query(100, ge=1, le=1000), svc: Services = Depends(services),
                    who: Principal = Depends(deps.require("grassroots", "admin"))) -> dict:
        from sqlalchemy import select

        query = select(Study)
        scope = who.site_scope()
        if scope is not None:
            query = query.where(Study.site.in_(scope))
        with svc.db.session() as session:
            studies = list(session.scalars(query.order_by(Study.arrived_at.desc(), Study.id.desc()).limit(limit)).all())
        items = [{
            "study_uid": s.study_uid, "site": s.site, "modality": s.modality, "patient_id": s.patient_id,
            "arrived_at": as_utc(s.arrived_at).isoformat(), "status": s.status, "ai_level": s.level,
            "report_status": s.report_status if s.status == SIGNED else "preliminary",
            "preliminary_ai_read": _summary(s.ai_read),
            "report": s.final_report if s.status == SIGNED else None,
            "signed_by": s.signed_by, "signed_at": as_utc(s.signed_at).isoformat() if s.signed_at else None,
            "links": {"study": f"/api/v1/studies/{s.study_uid}", "fhir": f"/fhir/DiagnosticReport?study={s.study_uid}"},
        } for s in studies]
        log_action(svc, request, who, "view_submissions", count=len(items))
        return {"items": items, "count": len(items)}

    # --- exports ---------------------------------------------------------------------------------
    @router.get("/api/v1/exports/signed-reads", tags=["exports"])
    def export_signed(request: Request, svc: Services = Depends(services),
                      who: Principal = Depends(deps.require("datasci", "admin"))) -> dict:
        rows = []
        for c, s in reading.signed_reads(svc.db, who.site_scope()):
            rows.append({
                "study": svc.tokens.pseudonym("study:" + s.study_uid, 24),
                "reader": svc.tokens.pseudonym("reader:" + c.signed_by, 12),
                "site": s.site, "modality": s.modality, "patient_sex": s.patient_sex,
                "patient_age_band": _age_band(s.patient_age), "signed_month": as_utc(c.signed_at).strftime("%Y-%m"),
                "agree": c.agree, "ai_findings": c.ai_findings, "final_findings": c.final_findings,
                "model_name": c.model_name, "model_version": c.model_version, "amendment": c.amends is not None,
            })
        log_action(svc, request, who, "export", rows=len(rows))
        return {"rows": rows, "count": len(rows), "deidentified": True}

    @router.get("/api/v1/exports/training.zip", tags=["exports"],
                responses={200: {"content": {"application/zip": {}}}})
    def export_training_zip(request: Request, svc: Services = Depends(services),
                            who: Principal = Depends(deps.require("datasci", "admin"))) -> Response:
        """Signed studies as training data, de-identified by DICOM PS3.15 Annex E (serving/deid.py):
        the objects, manifest.json and labels.csv in one zip. The re-identification keys stay on the
        server."""
        import shutil
        import tempfile
        import zipfile

        from serving.deid import export_training

        folder = Path(tempfile.mkdtemp(prefix="preread-export-"))
        try:
            summary = export_training(svc, folder, who.site_scope())
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(folder).as_posix())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        log_action(svc, request, who, "export_training", studies=summary.studies, files=summary.files,
                   excluded=len(summary.excluded))
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="preread-training.zip"'})

    # --- a patient's refusal of the automated read (PIPL art. 24) -------------------------------
    @router.post("/api/v1/studies/{study_uid}/refuse-ai", tags=["reading"])
    def refuse_ai(study_uid: str, request: Request, svc: Services = Depends(services),
                  who: Principal = Depends(deps.require("grassroots", "reader", "admin"))) -> dict:
        """The patient declines an automated pre-read: no model reads the study, and a read already
        made is withdrawn; a doctor reads it. Recorded in the audit trail."""
        from serving.store.work import refuse_ai as refuse

        study_for(svc, who, study_uid)
        refuse(svc.db, study_uid)
        log_action(svc, request, who, "refuse_ai", study_uid)
        study = svc.db.get_study(study_uid)
        return {"study_uid": study_uid, "status": study.status, "no_ai": study.no_ai, "ai_error": study.ai_error}

    # --- audit -----------------------------------------------------------------------------------
    @router.get("/api/v1/audit", tags=["audit"])
    def audit_log(request: Request, limit: int = Query(200, ge=1, le=5000), offset: int = Query(0, ge=0),
                  user: str | None = None, action: str | None = None, study: str | None = None,
                  svc: Services = Depends(services), who: Principal = Depends(deps.require("admin"))) -> dict:
        found = audit.entries(svc.db, limit=limit, offset=offset, user=user, action=action, study_uid=study)
        check = audit.verify_chain(svc.db)
        log_action(svc, request, who, "view_audit")
        return {"entries": [audit.as_dict(e) for e in found], "count": len(found), "chain": check.as_dict()}

    @router.get("/api/v1/audit/verify", tags=["audit"])
    def audit_verify(svc: Services = Depends(services), who: Principal = Depends(deps.require("admin"))) -> dict:
        return audit.verify_chain(svc.db).as_dict()

    # --- FHIR ------------------------------------------------------------------------------------
    @router.get("/fhir/DiagnosticReport", tags=["fhir"])
    def fhir_report(request: Request, study: str = Query(..., description="Study Instance UID"),
                    svc: Services = Depends(services), who: Principal = Depends(viewers)) -> JSONResponse:
        found = study_for(svc, who, study)
        resource = diagnostic_report(found, str(request.base_url).rstrip("/"))
        log_action(svc, request, who, "view_fhir", study)
        return JSONResponse(resource.model_dump(mode="json", exclude_none=True), media_type="application/fhir+json")

    # --- the web page ----------------------------------------------------------------------------
    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return FileResponse(WEB / name, media_type=STATIC[name], headers={"cache-control": "no-cache"})

    return router


def _summary(read: dict | None) -> dict | None:
    if not read:
        return None
    return {"level": read.get("triage", {}).get("level"),
            "findings": [f["code"] for f in read.get("findings", []) if f.get("positive")],
            "preliminary": True}


def _age_band(age: str | None) -> str | None:
    digits = "".join(ch for ch in str(age or "") if ch.isdigit())
    if not digits:
        return None
    years = int(digits) if not str(age).upper().endswith(("M", "W", "D")) else 0
    return "90+" if years >= 90 else f"{years // 10 * 10}-{years // 10 * 10 + 9}"


def _to_png(data: bytes, content_type: str, window: float | None,
            level: float | None) -> tuple[bytes, tuple[float, float] | None]:
    """An image object (PNG or DICOM) as an 8-bit PNG with an optional window/level, and the
    (width, centre) applied (None for colour images, which are not windowed)."""
    from PIL import Image

    if content_type == "application/dicom":
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data))
        pixels = ds.pixel_array
        if pixels.ndim == 3 and pixels.shape[-1] == 3:
            img = Image.fromarray(pixels.astype(np.uint8), "RGB")
            buffer = io.BytesIO(); img.save(buffer, "PNG"); return buffer.getvalue(), None
        arr = pixels.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
        if window is None and "WindowWidth" in ds:
            ww, wc = ds.WindowWidth, ds.WindowCenter
            window = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
            level = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            arr = arr.max() - arr + arr.min()
    else:
        arr = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if window is not None:
        centre = level if level is not None else (lo + hi) / 2
        lo, hi = centre - window / 2, centre + window / 2
    scaled = np.clip((arr - lo) / max(hi - lo, 1e-9), 0, 1) * 255
    buffer = io.BytesIO()
    Image.fromarray(scaled.astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue(), (hi - lo, (lo + hi) / 2)

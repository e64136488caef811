"""What a reader does with a study: claim, release, sign, the report, and what they look at
(the ECG traces, the image with its window, the heatmap); a patient's refusal of the AI read."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from PIL import Image

from datasets.ecg.errors import EcgInputError
from serving.api.deps import ReaderDep, RefuserDep, ServicesDep, ViewerDep, log_action, study_for
from serving.api.schemas import ClaimOut, EcgSignals, RefuseAiOut, ReleaseOut, ReportOut, SignBody, SignOut
from serving.services import Services
from serving.store import claims
from serving.store.db import as_utc
from serving.store.schema import Study
from serving.store.work import refuse_ai as refuse

router = APIRouter(tags=["reading"])
ECG_DISPLAY_HZ = 250.0


def reading_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except claims.ReadingError as exc:
        raise HTTPException(exc.status, exc.reason) from exc


@router.post("/api/v1/studies/{study_uid}/claim", response_model=ClaimOut)
def claim(study_uid: str, request: Request, svc: ServicesDep, who: ReaderDep) -> ClaimOut:
    study_for(svc, who, study_uid)
    try:
        held = claims.claim(svc.db, study_uid, who.user, svc.config.worklist.claim_minutes)
    except claims.ReadingError as exc:
        log_action(svc, request, who, "claim_refused", study_uid, reason=exc.reason)
        raise HTTPException(exc.status, exc.reason) from exc
    log_action(svc, request, who, "claim", study_uid, expires_at=held.expires_at.isoformat())
    return ClaimOut(**held.as_dict())


@router.post("/api/v1/studies/{study_uid}/release", response_model=ReleaseOut)
def release(study_uid: str, request: Request, svc: ServicesDep, who: ReaderDep) -> ReleaseOut:
    study_for(svc, who, study_uid)
    reading_call(claims.release, svc.db, study_uid, who.user, force=who.role == "admin")
    log_action(svc, request, who, "release", study_uid)
    return ReleaseOut(study_uid=study_uid, released=True)


@router.post("/api/v1/studies/{study_uid}/sign", response_model=SignOut)
def sign(study_uid: str, body: SignBody, request: Request, svc: ServicesDep, who: ReaderDep) -> SignOut:
    study_for(svc, who, study_uid)
    report = reading_call(
        claims.sign, svc.db, study_uid, who.user, agree=body.agree, findings=body.findings, impression=body.impression
    )
    log_action(svc, request, who, "sign", study_uid, report_status=report["status"], agree=report["agree"])
    return SignOut(study_uid=study_uid, report=report, links={"fhir": f"/fhir/DiagnosticReport?study={study_uid}"})


@router.get("/api/v1/studies/{study_uid}/report", response_model=ReportOut)
def report(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> ReportOut:
    study = study_for(svc, who, study_uid)
    history = [
        {
            "signed_by": c.signed_by,
            "signed_at": as_utc(c.signed_at).isoformat(),
            "agree": c.agree,
            "final_findings": c.final_findings,
            "impression": c.impression,
            "amends": c.amends,
        }
        for c in claims.corrections(svc.db, study_uid)
    ]
    log_action(svc, request, who, "view_report", study_uid)
    live = claims.claim_is_live(study)
    return ReportOut(
        study_uid=study_uid,
        status=study.status,
        report_status=study.report_status,
        claimed_by=study.claimed_by if live else None,
        claim_expires_at=as_utc(study.claim_expires_at).isoformat() if live else None,
        final_report=study.final_report,
        history=history,
    )


@router.get("/api/v1/studies/{study_uid}/ecg", response_model=EcgSignals)
def ecg_signals(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> EcgSignals:
    study = study_for(svc, who, study_uid)
    out = ecg_display_signals(svc, study)
    log_action(svc, request, who, "view_ecg", study_uid)
    return out


def ecg_display_signals(svc: Services, study: Study) -> EcgSignals:
    """The stored original's signals in mV at about 250 Hz (the page and the printed report draw them)."""
    if study.modality != "ECG":
        raise HTTPException(404, f"study {study.study_uid} is not an ECG")
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
    for name, row in zip(record.leads, signals, strict=True):
        leads[name] = [None if not math.isfinite(v) else round(float(v), 3) for v in row]
    return EcgSignals(
        study_uid=study.study_uid,
        sampling_rate=fs / step,
        original_sampling_rate=fs,
        units="mV",
        seconds=signals.shape[1] * step / fs,
        leads=leads,
    )


@router.get(
    "/api/v1/studies/{study_uid}/image.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def image(
    study_uid: str,
    request: Request,
    svc: ServicesDep,
    who: ViewerDep,
    window: float | None = Query(None, gt=0),
    level: float | None = None,
) -> Response:
    study = study_for(svc, who, study_uid)
    out = image_response(svc, study, "original", window, level)
    log_action(svc, request, who, "view_image", study_uid)
    return out


@router.get(
    "/api/v1/studies/{study_uid}/heatmap.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def heatmap(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> Response:
    study = study_for(svc, who, study_uid)
    out = image_response(svc, study, "ai_sc")
    log_action(svc, request, who, "view_heatmap", study_uid)
    return out


@router.post("/api/v1/studies/{study_uid}/refuse-ai", response_model=RefuseAiOut)
def refuse_ai(study_uid: str, request: Request, svc: ServicesDep, who: RefuserDep) -> RefuseAiOut:
    """The patient declines an automated pre-read (PIPL art. 24): no model reads the study, and a
    read already made is withdrawn; a doctor reads it. Recorded in the audit trail."""
    study_for(svc, who, study_uid)
    refuse(svc.db, study_uid)
    log_action(svc, request, who, "refuse_ai", study_uid)
    study = svc.db.get_study(study_uid)
    return RefuseAiOut(study_uid=study_uid, status=study.status, no_ai=study.no_ai, ai_error=study.ai_error)


def image_response(
    svc: Services, study: Study, role: str, window: float | None = None, level: float | None = None
) -> Response:
    png, used = render_png(svc, study, role, window, level)
    # the window actually applied, in the image's own units, so the viewer's sliders can start from it
    headers = {"X-Window-Width": f"{used[0]:g}", "X-Window-Center": f"{used[1]:g}"} if used else {}
    return Response(png, media_type="image/png", headers=headers)


def render_png(
    svc: Services, study: Study, role: str, window: float | None = None, level: float | None = None
) -> tuple[bytes, tuple[float, float] | None]:
    """The study's ``role`` instance (original image, ai_sc heatmap) as PNG bytes and the window applied
    (the viewer and the printed report)."""
    inst = next((i for i in study.instances if (i.role or "original") == role), None)
    if inst is None:
        raise HTTPException(404, f"no {'image' if role == 'original' else 'heatmap'} for study {study.study_uid} yet")
    try:
        data = svc.store.get(inst.storage_key)
    except OSError as exc:
        raise HTTPException(404, "object missing from the store") from exc
    if inst.content_type == "image/png" and window is None:
        # PNGs are windowed as 8-bit grey (see _to_png): the viewer's sliders start there
        return data, (256.0, 128.0)
    try:
        return _to_png(data, inst.content_type, window, level)
    except Exception as exc:  # an object we cannot render is a 404 for the viewer, not a crash
        raise HTTPException(404, f"cannot render {inst.content_type}: {type(exc).__name__}") from exc


def _to_png(
    data: bytes, content_type: str, window: float | None, level: float | None
) -> tuple[bytes, tuple[float, float] | None]:
    """An image object (PNG or DICOM) as an 8-bit PNG with an optional window/level, and the
    (width, centre) applied (None for colour images, which are not windowed)."""
    if content_type == "application/dicom":
        ds = pydicom.dcmread(io.BytesIO(data))
        pixels = ds.pixel_array
        if pixels.ndim == 3 and pixels.shape[-1] == 3:
            img = Image.fromarray(pixels.astype(np.uint8), "RGB")
            buffer = io.BytesIO()
            img.save(buffer, "PNG")
            return buffer.getvalue(), None
        slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
        arr = pixels.astype(np.float64) * slope + intercept
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

"""DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS, WADO-RS. Token auth, site scoping.

STOW-RS answers: 200 all stored; 202 some stored, some failed; 409 none stored (each failure in
FailedSOPSequence with FailureReason and an Error Comment); 503 none stored because the database
or the object store is unavailable (0xA700 per part: send again later); 429 the site is over its
rate limit; 400 a malformed multipart payload; 413 too large; 415 a media type other than
multipart/related; type="application/dicom". Every part is validated before its bytes are stored,
so a bad part leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from typing import Any, BinaryIO

import pydicom
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError

from serving import memory
from serving.api.deps import (
    SenderDep,
    ServicesDep,
    ViewerDep,
    client_of,
    enforce_rate_limit,
    only_site,
    spool_body,
    study_for,
)
from serving.auth.tokens import Principal
from serving.ingest.dicom import DicomAccepted, DicomIngest, DicomInputError
from serving.ingest.spool import MalformedMultipart, iter_parts
from serving.privacy import mask_dicom_json, mask_id
from serving.services import Services
from serving.store import audit
from serving.store.objects import StorageUnavailable
from serving.store.queries import search_studies
from serving.store.schema import Study

log = logging.getLogger("preread.dicomweb")

DICOM_JSON = "application/dicom+json"
DicomJson = dict[str, Any]  # one DICOM JSON Model object (PS3.18 F.2): tag → {"vr", "Value"}
MULTIPART_DICOM: dict[int | str, dict[str, Any]] = {
    200: {"content": {'multipart/related; type="application/dicom"': {}}}
}


class DicomJSONResponse(JSONResponse):
    media_type = DICOM_JSON


def _attr(vr: str, *values: Any) -> dict[str, Any]:
    values = [v for v in values if v not in (None, "")]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("US", "UL", "IS"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _content_type_params(header: str) -> tuple[str, dict[str, str]]:
    main, *rest = [p.strip() for p in header.split(";")]
    params = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return main.lower(), params


def multipart_response(objects: list[tuple[bytes, str | None]]) -> Response:
    boundary = "preread-wado-boundary-7c1f"
    chunks = []
    for data, syntax in objects:
        ctype = "application/dicom" + (f"; transfer-syntax={syntax}" if syntax else "")
        chunks.append(f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(
        b"".join(chunks),
        media_type=None,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    )


def _transfer_syntax(data: bytes) -> str | None:
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=[])
        return str(header.file_meta.TransferSyntaxUID)
    except Exception:
        return None


def _multipart_boundary(request: Request) -> str:
    """The boundary of a multipart/related; type="application/dicom" request (415/400 otherwise)."""
    main, params = _content_type_params(request.headers.get("content-type", ""))
    if main != "multipart/related":
        raise HTTPException(
            415, f'STOW-RS takes multipart/related; type="application/dicom", not {main or "no content type"}'
        )
    part_type = params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise HTTPException(415, f'only type="application/dicom" parts are supported, not {part_type!r}')
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPException(400, "multipart/related without a boundary parameter")
    return boundary


def _sending_site(svc: Services, who: Principal, site: str | None) -> str:
    """The site the objects are sent for: named, or the caller's only one; the caller's and configured."""
    site = site or only_site(who)
    if not site:
        raise HTTPException(400, "say which site sends these objects (?site=...)")
    if not who.can_access_site(site):
        raise HTTPException(403, f"user {who.user!r} may not send for site {site!r}")
    if site not in svc.config.site_ids():
        raise HTTPException(400, f"site {site!r} is not configured")
    return site


router = APIRouter(prefix="/dicomweb", tags=["DICOMweb"])


# --- STOW-RS --------------------------------------------------------------------------------
@router.post(
    "/studies",
    response_model=DicomJson,
    response_class=DicomJSONResponse,
    responses={202: {}, 400: {}, 409: {}, 413: {}, 415: {}, 503: {}},
)
@router.post(
    "/studies/{study_uid}", response_model=DicomJson, response_class=DicomJSONResponse, include_in_schema=False
)
async def stow(
    request: Request,
    svc: ServicesDep,
    who: SenderDep,
    study_uid: str | None = None,
    site: str | None = Query(None),
    no_ai: bool = Query(False, description="the patient declined an automated pre-read"),
) -> JSONResponse:
    boundary = _multipart_boundary(request)
    site = _sending_site(svc, who, site)
    enforce_rate_limit(svc, site)
    # The body goes to a temporary file as it arrives and is split from there, one part at a time:
    # a 200 MiB body costs a read window, not 200 MiB (serving/ingest/spool.py).
    body_file = await spool_body(request, svc.config.dicom.max_stow_bytes, "STOW-RS")
    try:
        stored, failed, ecg_reads, unavailable = await asyncio.to_thread(
            _store_parts, svc, body_file, boundary, site, who, study_uid, no_ai
        )
    finally:
        body_file.close()
        memory.trim()
    base = str(request.base_url).rstrip("/")
    stored = [
        {
            "00081150": _attr("UI", accepted.sop_class_uid),
            "00081155": _attr("UI", accepted.sop_instance_uid),
            "00081190": _attr(
                "UR",
                f"{base}/dicomweb/studies/{accepted.study_uid}/series/"
                f"{accepted.series_uid}/instances/{accepted.sop_instance_uid}",
            ),
        }
        for accepted in stored
    ]
    for uid, record, site in ecg_reads:
        await svc.ecg.read(uid, record, site)
    body: dict[str, Any] = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if stored else 409)
    if status == 409 and unavailable == len(failed):
        return JSONResponse(body, status_code=503, media_type=DICOM_JSON, headers={"Retry-After": "30"})
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def _store_parts(
    svc: Services, body_file: BinaryIO, boundary: str, site: str, who: Principal, study_uid: str | None, no_ai: bool
) -> tuple[list[DicomAccepted], list, list, int]:
    """Validate and store each part of a spooled STOW-RS body: (stored, failed part answers, ECG reads
    to run, parts refused because storage or the database is down). HTTPException 400 when the body
    cannot be split."""
    ingest = svc.dicom
    stored, failed, ecg_reads, unavailable = [], [], [], 0
    try:
        for part in iter_parts(body_file, boundary, svc.config.limits.spool_in_memory_bytes):
            with part.body:
                ctype = _content_type_params(part.headers.get("content-type", "application/dicom"))[0]
                if ctype != "application/dicom":
                    failed.append(_failed(None, None, 0xC000, f"part of type {ctype} is not application/dicom"))
                    continue
                if part.size > ingest.max_bytes:  # never read into memory
                    failed.append(
                        _failed(
                            None,
                            None,
                            0xC000,
                            f"object of {part.size} bytes exceeds the limit of {ingest.max_bytes} bytes",
                        )
                    )
                    continue
                answer = _store_part(ingest, part.read(), site, who, study_uid, no_ai)
            if isinstance(answer, DicomAccepted):
                stored.append(answer)
                if answer.ecg_record is not None:
                    ecg_reads.append((answer.study_uid, answer.ecg_record, answer.site))
            else:
                failed.append(answer)
                unavailable += answer["00081197"]["Value"] == [0xA700]
    except MalformedMultipart as exc:
        raise HTTPException(400, f"malformed multipart/related body: {exc}") from exc
    if not stored and not failed:
        raise HTTPException(400, "multipart/related body has no parts")
    return stored, failed, ecg_reads, unavailable


def _store_part(
    ingest: DicomIngest, content: bytes, site: str, who: Principal, study_uid: str | None, no_ai: bool
) -> DicomAccepted | dict[str, Any]:
    """One part validated and stored (its DicomAccepted), or its FailedSOPSequence item."""
    try:
        dataset = ingest.validate(content)
        if study_uid and str(dataset.StudyInstanceUID) != study_uid:
            # PS3.18 10.5: an instance of another study than the one in the URL is refused.
            raise DicomInputError(
                f"instance belongs to study {dataset.StudyInstanceUID}, not {study_uid}",
                0xA900,
                str(dataset.SOPClassUID),
                str(dataset.SOPInstanceUID),
            )
        return ingest.accept(content, site, "stow", who.user, dataset, no_ai=no_ai)
    except DicomInputError as exc:
        return _failed(exc.sop_class_uid, exc.sop_instance_uid, exc.status, exc.reason)
    except StorageUnavailable as exc:
        log.error("STOW-RS refused a part: %s", exc)
        return _failed(None, None, 0xA700, "storage unavailable, resend later")
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):
            raise
        # Earlier parts may be stored already: answer per part, not with one 503 for all.
        log.error("STOW-RS refused a part: database unavailable: %s", type(exc).__name__)
        return _failed(None, None, 0xA700, "database unavailable, resend later")


# --- QIDO-RS --------------------------------------------------------------------------------
def _query(request: Request, *names: str) -> str | None:
    for name in names:
        value = request.query_params.get(name)
        if value:
            return value
    return None


@router.get("/studies", response_model=list[DicomJson], response_class=DicomJSONResponse)
def qido_studies(
    request: Request,
    svc: ServicesDep,
    who: ViewerDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> JSONResponse:
    patient_id = _query(request, "PatientID", "00100020")
    if patient_id and svc.config.privacy.mask_patient_ids:
        patient_id = mask_id(patient_id)
    date = _query(request, "StudyDate", "00080020")
    date_from = date_to = None
    if date:
        if not re.fullmatch(r"\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8}", date):
            raise HTTPException(400, f"StudyDate {date!r}: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
        low, dash, high = date.partition("-")
        date_from, date_to = (low or None), (high if dash else low) or None
    studies = search_studies(
        svc.db,
        who.site_scope(),
        study_uid=_query(request, "StudyInstanceUID", "0020000D"),
        patient_id=patient_id,
        modality=_query(request, "ModalitiesInStudy", "00080061"),
        date_from=date_from,
        date_to=date_to,
        limit=limit,
        offset=offset,
    )
    base = str(request.base_url).rstrip("/")
    out = []
    for study in studies:
        modalities = sorted({i.modality for i in study.instances if i.modality} or {study.modality})
        out.append(
            {
                "00080020": _attr("DA", study.study_date),
                "00080050": _attr("SH", study.accession_number),
                "00080061": _attr("CS", *modalities),
                "00081030": _attr("LO", study.description),
                "00081190": _attr("UR", f"{base}/dicomweb/studies/{study.study_uid}"),
                "00100010": _attr("PN", study.patient_name),
                "00100020": _attr("LO", study.patient_id),
                "0020000D": _attr("UI", study.study_uid),
                "00201206": _attr("IS", len({i.series_uid for i in study.instances})),
                "00201208": _attr("IS", len(study.instances)),
            }
        )
    _audit_view(request, svc, who)
    return JSONResponse(out, media_type=DICOM_JSON)


def _study(request: Request, svc: Services, who: Principal, study_uid: str) -> Study:
    """The study (404 for another site's, as if it did not exist), its access audited."""
    study = study_for(svc, who, study_uid)
    _audit_view(request, svc, who, study_uid)
    return study


def _audit_view(request: Request, svc: Services, who: Principal, study_uid: str | None = None) -> None:
    """Every QIDO-RS, WADO-RS and metadata access is an audit event; a viewer's repeats of the same
    request are aggregated per window like the worklist polls (serving/store/audit.py record_view)."""
    audit.record_view(
        svc.db,
        "view_dicomweb",
        svc.config.audit.view_window_seconds,
        user=who.user,
        role=who.role,
        study_uid=study_uid,
        client=client_of(request),
        detail={"path": request.url.path, "query": str(request.query_params)[:256]},
    )


@router.get("/studies/{study_uid}/series", response_model=list[DicomJson], response_class=DicomJSONResponse)
def qido_series(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> JSONResponse:
    study = _study(request, svc, who, study_uid)
    modality = _query(request, "Modality", "00080060")
    series: dict[str, list] = {}
    for instance in study.instances:
        series.setdefault(instance.series_uid, []).append(instance)
    base = str(request.base_url).rstrip("/")
    out = [
        {
            "00080060": _attr("CS", items[0].modality),
            "00081190": _attr("UR", f"{base}/dicomweb/studies/{study_uid}/series/{uid}"),
            "0020000D": _attr("UI", study_uid),
            "0020000E": _attr("UI", uid),
            "00201209": _attr("IS", len(items)),
        }
        for uid, items in series.items()
        if not modality or (items[0].modality or "").upper() == modality.upper()
    ]
    return JSONResponse(out, media_type=DICOM_JSON)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances",
    response_model=list[DicomJson],
    response_class=DicomJSONResponse,
)
def qido_instances(study_uid: str, series_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> JSONResponse:
    study = _study(request, svc, who, study_uid)
    base = str(request.base_url).rstrip("/")
    out = [
        {
            "00080016": _attr("UI", i.sop_class_uid),
            "00080018": _attr("UI", i.sop_instance_uid),
            "00080060": _attr("CS", i.modality),
            "00081190": _attr(
                "UR", f"{base}/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{i.sop_instance_uid}"
            ),
            "0020000D": _attr("UI", study_uid),
            "0020000E": _attr("UI", i.series_uid),
        }
        for i in study.instances
        if i.series_uid == series_uid
    ]
    return JSONResponse(out, media_type=DICOM_JSON)


# --- WADO-RS --------------------------------------------------------------------------------
def _retrieve(
    request: Request,
    svc: Services,
    who: Principal,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    accept = request.headers.get("accept", "*/*").lower()
    if not any(t in accept for t in ("multipart/related", "application/dicom", "*/*")) or (
        "multipart/related" in accept and "type=" in accept and "application/dicom" not in accept
    ):
        raise HTTPException(406, 'WADO-RS here returns multipart/related; type="application/dicom"')
    study = _study(request, svc, who, study_uid)
    instances = [
        i
        for i in study.instances
        if (series_uid is None or i.series_uid == series_uid)
        and (sop_uid is None or i.sop_instance_uid == sop_uid)
        and i.content_type == "application/dicom"
    ]
    if not instances:
        raise HTTPException(404, "no such DICOM instance in this study")
    objects = []
    for instance in instances:
        data = svc.store.get(instance.storage_key)
        objects.append((data, _transfer_syntax(data)))
    return multipart_response(objects)


def _metadata(
    request: Request,
    svc: Services,
    who: Principal,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> JSONResponse:
    study = _study(request, svc, who, study_uid)
    base = str(request.base_url).rstrip("/")
    out = []
    for i in study.instances:
        if (
            (series_uid and i.series_uid != series_uid)
            or (sop_uid and i.sop_instance_uid != sop_uid)
            or i.content_type != "application/dicom"
        ):
            continue
        ds = pydicom.dcmread(io.BytesIO(svc.store.get(i.storage_key)), stop_before_pixels=True)
        url = f"{base}/dicomweb/studies/{study_uid}/series/{i.series_uid}/instances/{i.sop_instance_uid}"
        item = ds.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=lambda _e, u=url: u)
        # Identity stays in the original (WADO-RS); metadata is masked like the worklist (privacy.*).
        out.append(mask_dicom_json(item, svc.config.privacy.mask_patient_names, svc.config.privacy.mask_patient_ids))
    if not out:
        raise HTTPException(404, "no such DICOM instance in this study")
    return JSONResponse(out, media_type=DICOM_JSON)


@router.get("/studies/{study_uid}/metadata", response_model=list[DicomJson], response_class=DicomJSONResponse)
def study_metadata(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> Response:
    return _metadata(request, svc, who, study_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/metadata",
    response_model=list[DicomJson],
    response_class=DicomJSONResponse,
)
def series_metadata(study_uid: str, series_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> Response:
    return _metadata(request, svc, who, study_uid, series_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
    response_model=list[DicomJson],
    response_class=DicomJSONResponse,
)
def instance_metadata(
    study_uid: str, series_uid: str, sop_uid: str, request: Request, svc: ServicesDep, who: ViewerDep
) -> Response:
    return _metadata(request, svc, who, study_uid, series_uid, sop_uid)


@router.get("/studies/{study_uid}", response_class=Response, responses=MULTIPART_DICOM)
def wado_study(study_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> Response:
    return _retrieve(request, svc, who, study_uid)


@router.get("/studies/{study_uid}/series/{series_uid}", response_class=Response, responses=MULTIPART_DICOM)
def wado_series(study_uid: str, series_uid: str, request: Request, svc: ServicesDep, who: ViewerDep) -> Response:
    return _retrieve(request, svc, who, study_uid, series_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}", response_class=Response, responses=MULTIPART_DICOM
)
def wado_instance(
    study_uid: str, series_uid: str, sop_uid: str, request: Request, svc: ServicesDep, who: ViewerDep
) -> Response:
    return _retrieve(request, svc, who, study_uid, series_uid, sop_uid)


def _failed(sop_class: str | None, sop_uid: str | None, reason: int, comment: str) -> dict[str, Any]:
    item = {
        "00081150": _attr("UI", sop_class),
        "00081155": _attr("UI", sop_uid),
        "00081197": _attr("US", reason),
        "00000902": _attr("LO", comment[:64]),  # Error Comment: the reason in words
    }
    return item

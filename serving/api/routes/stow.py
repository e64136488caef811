"""STOW-RS (PS3.18 10.5) under /dicomweb: DICOM objects in, durably stored before the answer. Token auth,
site scoping; the reads (QIDO-RS, WADO-RS) are in routes/dicomweb.py.

Answers: 200 all stored; 202 some stored, some failed; 409 none stored (each failure in
FailedSOPSequence with FailureReason and an Error Comment); 503 none stored because the database
or the object store is unavailable (0xA700 per part: send again later); 429 the site is over its
rate limit; 400 a malformed multipart payload; 413 too large; 415 a media type other than
multipart/related; type="application/dicom". Every part is validated before its bytes are stored,
so a bad part leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, BinaryIO

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError

from serving import memory
from serving.api.deps import SenderDep, ServicesDep, enforce_rate_limit, only_site, spool_body
from serving.api.dicom_json import DICOM_JSON, DicomJson, DicomJSONResponse, attr, content_type_params, failed_part
from serving.auth.tokens import Principal
from serving.ingest.dicom import DicomAccepted, DicomIngest, DicomInputError
from serving.ingest.spool import MalformedMultipart, iter_parts
from serving.services import Services
from serving.store.objects import StorageUnavailable

log = logging.getLogger("preread.dicomweb")


def _multipart_boundary(request: Request) -> str:
    """The boundary of a multipart/related; type="application/dicom" request (415/400 otherwise)."""
    main, params = content_type_params(request.headers.get("content-type", ""))
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
            "00081150": attr("UI", accepted.sop_class_uid),
            "00081155": attr("UI", accepted.sop_instance_uid),
            "00081190": attr(
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
                ctype = content_type_params(part.headers.get("content-type", "application/dicom"))[0]
                if ctype != "application/dicom":
                    failed.append(failed_part(None, None, 0xC000, f"part of type {ctype} is not application/dicom"))
                    continue
                if part.size > ingest.max_bytes:  # never read into memory
                    failed.append(
                        failed_part(
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
        return failed_part(exc.sop_class_uid, exc.sop_instance_uid, exc.status, exc.reason)
    except StorageUnavailable as exc:
        log.error("STOW-RS refused a part: %s", exc)
        return failed_part(None, None, 0xA700, "storage unavailable, resend later")
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):
            raise
        # Earlier parts may be stored already: answer per part, not with one 503 for all.
        log.error("STOW-RS refused a part: database unavailable: %s", type(exc).__name__)
        return failed_part(None, None, 0xA700, "database unavailable, resend later")

"""QIDO-RS and WADO-RS (PS3.18 10.4, 10.6) under /dicomweb: search, metadata and retrieval of the stored
DICOM objects. Token auth, site scoping (another site's study is a 404), every access audited; STOW-RS is in
routes/stow.py.
"""

from __future__ import annotations

import io
import re

import pydicom
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from serving.api.deps import PageLimit, PageOffset, ServicesDep, ViewerDep, log_view, study_for
from serving.api.dicom_json import (
    DICOM_JSON,
    MULTIPART_DICOM,
    DicomJson,
    DicomJSONResponse,
    attr,
    multipart_response,
    transfer_syntax,
)
from serving.auth.tokens import Principal
from serving.privacy import mask_dicom_json, mask_id
from serving.services import Services
from serving.store.queries import search_studies
from serving.store.schema import Instance, Study

router = APIRouter(prefix="/dicomweb", tags=["DICOMweb"])


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
    limit: PageLimit = 100,
    offset: PageOffset = 0,
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
                "00080020": attr("DA", study.study_date),
                "00080050": attr("SH", study.accession_number),
                "00080061": attr("CS", *modalities),
                "00081030": attr("LO", study.description),
                "00081190": attr("UR", f"{base}/dicomweb/studies/{study.study_uid}"),
                "00100010": attr("PN", study.patient_name),
                "00100020": attr("LO", study.patient_id),
                "0020000D": attr("UI", study.study_uid),
                "00201206": attr("IS", len({i.series_uid for i in study.instances})),
                "00201208": attr("IS", len(study.instances)),
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
    log_view(svc, request, who, "view_dicomweb", study_uid, query=str(request.query_params)[:256])


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
            "00080060": attr("CS", items[0].modality),
            "00081190": attr("UR", f"{base}/dicomweb/studies/{study_uid}/series/{uid}"),
            "0020000D": attr("UI", study_uid),
            "0020000E": attr("UI", uid),
            "00201209": attr("IS", len(items)),
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
            "00080016": attr("UI", i.sop_class_uid),
            "00080018": attr("UI", i.sop_instance_uid),
            "00080060": attr("CS", i.modality),
            "00081190": attr(
                "UR", f"{base}/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{i.sop_instance_uid}"
            ),
            "0020000D": attr("UI", study_uid),
            "0020000E": attr("UI", i.series_uid),
        }
        for i in study.instances
        if i.series_uid == series_uid
    ]
    return JSONResponse(out, media_type=DICOM_JSON)


# --- WADO-RS --------------------------------------------------------------------------------
def _dicom_objects(request: Request, svc: Services, who: Principal, study_uid: str, *within: str) -> list[Instance]:
    """The DICOM objects (not ECGs sent as WFDB/JSON) a WADO-RS path names: the study's, or those of the
    series in ``within[0]``, or the one instance in ``within[1]``; the access audited, 404 when there are
    none (or the study is another site's)."""
    series_uid, sop_uid = (*within, None, None)[:2]
    instances = [
        i
        for i in _study(request, svc, who, study_uid).instances
        if (series_uid is None or i.series_uid == series_uid)
        and (sop_uid is None or i.sop_instance_uid == sop_uid)
        and i.content_type == "application/dicom"
    ]
    if not instances:
        raise HTTPException(404, "no such DICOM instance in this study")
    return instances


def _retrieve(request: Request, svc: Services, who: Principal, study_uid: str, *within: str) -> Response:
    accept = request.headers.get("accept", "*/*").lower()
    if not any(t in accept for t in ("multipart/related", "application/dicom", "*/*")) or (
        "multipart/related" in accept and "type=" in accept and "application/dicom" not in accept
    ):
        raise HTTPException(406, 'WADO-RS here returns multipart/related; type="application/dicom"')
    objects = []
    for instance in _dicom_objects(request, svc, who, study_uid, *within):
        data = svc.store.get(instance.storage_key)
        objects.append((data, transfer_syntax(data)))
    return multipart_response(objects)


def _metadata(request: Request, svc: Services, who: Principal, study_uid: str, *within: str) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    out = []
    for i in _dicom_objects(request, svc, who, study_uid, *within):
        ds = pydicom.dcmread(io.BytesIO(svc.store.get(i.storage_key)), stop_before_pixels=True)
        url = f"{base}/dicomweb/studies/{study_uid}/series/{i.series_uid}/instances/{i.sop_instance_uid}"
        item = ds.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=lambda _e, u=url: u)
        # Identity stays in the original (WADO-RS); metadata is masked like the worklist (privacy.*).
        out.append(mask_dicom_json(item, svc.config.privacy.mask_patient_names, svc.config.privacy.mask_patient_ids))
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

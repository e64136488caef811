"""GET /fhir/DiagnosticReport?study=...: the FHIR R4 DiagnosticReport of a study (preliminary, then
final once signed), built by serving/results/fhir.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from serving.api.deps import ServicesDep, ViewerDep, log_action, study_for
from serving.results.fhir import diagnostic_report

router = APIRouter(tags=["fhir"])


class FhirJSONResponse(JSONResponse):
    media_type = "application/fhir+json"


@router.get("/fhir/DiagnosticReport", response_model=dict[str, Any], response_class=FhirJSONResponse)
def fhir_report(
    request: Request, svc: ServicesDep, who: ViewerDep, study: str = Query(..., description="Study Instance UID")
) -> FhirJSONResponse:
    found = study_for(svc, who, study)
    resource = diagnostic_report(found, str(request.base_url).rstrip("/"), svc.config.locale)
    log_action(svc, request, who, "view_fhir", study)
    return FhirJSONResponse(resource.model_dump(mode="json", exclude_none=True))

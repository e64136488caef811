"""KServe v2 (Open Inference) routes on the ingress and the in-process app: /v2, /v2/health/*,
/v2/models/{name}[/versions/{v}][/ready|/infer]. The protocol itself (codec, checks) is
serving/replica/kserve.py, shared with the model replicas that answer /v2/models/{name} directly."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from serving.api.deps import ServicesDep, require
from serving.api.schemas import ModelReady, ServerLive, ServerMetadata, ServerReady
from serving.auth.tokens import Principal
from serving.replica.kserve import HEADER_LENGTH, RAW_ROLES, V2Error, check_version, error_response, run_infer
from serving.services import RawModel, Services

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
RawUserDep = Annotated[Principal, Depends(require(*RAW_ROLES))]


def model_or_404(svc: Services, name: str) -> RawModel:
    model = svc.raw_models.get(name)
    if model is None:
        raise HTTPException(404, f"model {name!r} is not served here; served: {sorted(svc.raw_models)}")
    return model


def metadata(name: str, version: str | None, svc: Services) -> dict[str, Any]:
    model = model_or_404(svc, name)
    try:
        check_version(model.metadata, version)
    except V2Error as exc:
        raise HTTPException(exc.status, exc.message) from exc
    return model.metadata


@router.get("", response_model=ServerMetadata)
def server_metadata(svc: ServicesDep) -> ServerMetadata:
    return ServerMetadata(name="preread", version="0.1.0", extensions=["binary_tensor_data"])


@router.get("/health/live", response_model=ServerLive)
def server_live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses={503: {"model": ServerReady}})
def server_ready(svc: ServicesDep) -> JSONResponse:
    ready = all(svc.models_ready.values())
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


# Each route answers with and without a version in the path (the unversioned form takes the
# version served now; there a ?version= query does the same as the path).
@router.get("/models/{name}", response_model=dict[str, Any])
@router.get("/models/{name}/versions/{version}", response_model=dict[str, Any])
def model_metadata_route(name: str, svc: ServicesDep, _: RawUserDep, version: str | None = None) -> dict[str, Any]:
    return metadata(name, version, svc)


@router.get("/models/{name}/ready", response_model=ModelReady, responses={503: {"model": ModelReady}})
@router.get(
    "/models/{name}/versions/{version}/ready", response_model=ModelReady, responses={503: {"model": ModelReady}}
)
def model_ready(name: str, svc: ServicesDep, _: RawUserDep, version: str | None = None) -> JSONResponse:
    metadata(name, version, svc)
    ready = bool(svc.models_ready.get(name))
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)


@router.post("/models/{name}/infer", response_class=Response)
@router.post("/models/{name}/versions/{version}/infer", response_class=Response)
async def model_infer(
    name: str, http_request: Request, svc: ServicesDep, _: RawUserDep, version: str | None = None
) -> Response:
    model = model_or_404(svc, name)
    try:
        body, headers = await run_infer(
            model.metadata, model.infer, await http_request.body(), http_request.headers.get(HEADER_LENGTH), version
        )
    except V2Error as exc:
        return error_response(exc)
    return Response(body, headers=headers)

"""The KServe v2 (Open Inference) protocol on preread's own ingress, so tritonclient and any v2
client can call the served networks directly: tensors in, probabilities out, no triage or storage.

GET /v2, GET /v2/health/ready, GET /v2/models/{name}, GET /v2/models/{name}/ready,
POST /v2/models/{name}/infer (JSON tensors). Token auth (datasci or admin), as raw model access
bypasses the worklist.
"""

# No postponed annotations here: Ray re-resolves route signatures from a by-value pickle,
# where a string annotation such as "Request" cannot be found.

import json

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ValidationError

from serving.auth import Principal
from serving.deps import ApiDeps
from serving.services import Services

DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


class InferTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list | None = None
    parameters: dict | None = None


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferTensor]
    outputs: list[dict] | None = None
    parameters: dict | None = None


def build_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["kserve-v2"])
    services = deps.services()
    allowed = deps.require("datasci", "admin")

    def model_or_404(svc: Services, name: str):
        model = svc.raw_models.get(name)
        if model is None:
            raise HTTPException(404, f"model {name!r} is not served here; served: {sorted(svc.raw_models)}")
        return model

    @router.get("")
    def server_metadata(svc: Services = Depends(services)) -> dict:
        return {"name": "preread", "version": "0.1.0", "extensions": []}

    @router.get("/health/ready")
    def server_ready(svc: Services = Depends(services)) -> dict:
        return {"ready": all(svc.models_ready.values())}

    @router.get("/models/{name}")
    def model_metadata(name: str, svc: Services = Depends(services), _: Principal = Depends(allowed)) -> dict:
        return model_or_404(svc, name).metadata

    @router.get("/models/{name}/ready")
    def model_ready(name: str, svc: Services = Depends(services), _: Principal = Depends(allowed)) -> dict:
        model_or_404(svc, name)
        return {"name": name, "ready": bool(svc.models_ready.get(name))}

    @router.post("/models/{name}/infer")
    async def infer(name: str, http_request: Request, svc: Services = Depends(services),
                    _: Principal = Depends(allowed)) -> dict:
        model = model_or_404(svc, name)
        request, binary = await _parse_infer_request(http_request)
        expected = model.metadata["inputs"][0]
        if len(request.inputs) != 1:
            raise HTTPException(400, f"model {name!r} takes one input tensor ({expected['name']})")
        tensor = request.inputs[0]
        if tensor.datatype not in DTYPES:
            raise HTTPException(400, f"datatype {tensor.datatype} not supported; use FP32")
        want = expected["shape"][1:]
        if len(tensor.shape) != len(expected["shape"]) or list(tensor.shape[1:]) != want:
            raise HTTPException(400, f"input shape {tensor.shape} does not match {expected['shape']}")
        try:
            if binary is not None:  # binary tensor extension: raw little-endian values after the JSON header
                batch = np.frombuffer(binary, dtype=DTYPES[tensor.datatype]).reshape(tensor.shape).astype(np.float32)
            else:
                batch = np.asarray(tensor.data, dtype=DTYPES[tensor.datatype]).reshape(tensor.shape).astype(np.float32)
        except ValueError as exc:
            raise HTTPException(400, f"input data does not fill shape {tensor.shape}: {exc}") from exc
        if not np.isfinite(batch).all():
            raise HTTPException(400, "input contains non-finite values")
        probabilities = np.asarray(await model.infer(batch), dtype=np.float32)
        output = model.metadata["outputs"][0]
        return {
            "model_name": name, "model_version": str(model.metadata.get("versions", [""])[0]),
            "id": request.id,
            "outputs": [{"name": output["name"], "datatype": "FP32", "shape": list(probabilities.shape),
                         "data": probabilities.ravel().tolist()}],
        }

    return router


async def _parse_infer_request(request: Request) -> tuple[InferRequest, bytes | None]:
    """JSON body, or the v2 binary extension (Inference-Header-Content-Length: JSON header, then
    tensor bytes). Content type is not required: tritonclient sends none."""
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    binary = None
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise HTTPException(400, "Inference-Header-Content-Length does not fit the body")
        body, binary = body[: int(header_length)], body[int(header_length):]
    try:
        parsed = InferRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise HTTPException(400, f"not a KServe v2 inference request: {exc}") from exc
    if binary is None and any(t.data is None for t in parsed.inputs):
        raise HTTPException(400, "input tensor has no data")
    return parsed, binary


def model_metadata(name: str, identity: dict, labels: list[str], input_shape: list[int]) -> dict:
    """v2 model metadata for a network with one input (batch first) and one probability output."""
    return {
        "name": name, "versions": [str(identity.get("version"))], "platform": identity.get("backend", ""),
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *input_shape]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]}],
        "parameters": {"labels": labels, "architecture": identity.get("architecture"), "demo": identity.get("demo")},
    }

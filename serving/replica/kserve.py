"""The KServe v2 (Open Inference) protocol, so tritonclient and any v2 client can call the served
networks directly: tensors in, probabilities out, no triage or storage.

    GET  /v2                                        server metadata
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}]           model metadata (labels, input shape, version)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer     JSON tensors, or the binary tensor extension

Token auth (datasci or admin): raw model access bypasses the worklist. A request may carry a
batch (the first axis) — one request of 32 ECGs costs the HTTP and auth work once — and a
``priority`` parameter (serving.priority). Outputs come back as JSON, or binary when the request
asks (``binary_data_output``, or ``binary_data`` on the output, as tritonclient does by default).

Under Ray Serve each model deployment answers ``/v2/models/{name}/...`` itself
(serving/replica/deployment.py: one application per model, no ingress hop); the ingress answers the
rest (serving/api/routes/kserve.py), and everything in the in-process app. Both use the codec below.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from serving.auth.tokens import AuthError, Principal
from serving.auth.users import token_revoked
from serving.priority import PriorityError, parse_priority

DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}
HEADER_LENGTH = "inference-header-content-length"
RAW_ROLES = ("datasci", "admin")


class V2Error(Exception):
    """A request refused with ``status`` and a reason (sent as the v2 ``{"error": ...}`` body)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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


# --- codec ----------------------------------------------------------------------------------------
def parse_infer(body: bytes, header_length: str | None) -> tuple[InferRequest, bytes | None]:
    """JSON body, or the binary extension (Inference-Header-Content-Length: JSON header, then raw
    tensor bytes). No content type is required: tritonclient sends none."""
    binary = None
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Error(400, "Inference-Header-Content-Length does not fit the body")
        body, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    try:
        parsed = InferRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise V2Error(400, f"not a KServe v2 inference request: {exc}") from exc
    if binary is None and any(t.data is None for t in parsed.inputs):
        raise V2Error(400, "input tensor has no data")
    return parsed, binary


def input_batch(request: InferRequest, binary, metadata: dict) -> np.ndarray:
    """The one input tensor as float32 [B, ...], checked against the model's metadata."""
    expected = metadata["inputs"][0]
    if len(request.inputs) != 1:
        raise V2Error(400, f"model {metadata['name']!r} takes one input tensor ({expected['name']})")
    tensor = request.inputs[0]
    if tensor.datatype not in DTYPES:
        raise V2Error(400, f"datatype {tensor.datatype} not supported; use FP32")
    if len(tensor.shape) != len(expected["shape"]) or list(tensor.shape[1:]) != expected["shape"][1:]:
        raise V2Error(400, f"input shape {tensor.shape} does not match {expected['shape']}")
    if tensor.shape[0] < 1:
        raise V2Error(400, f"input shape {tensor.shape}: the batch axis must be at least 1")
    dtype = DTYPES[tensor.datatype]
    try:
        if binary is not None:  # raw little-endian values; zero-copy when already float32
            size = (tensor.parameters or {}).get("binary_data_size", len(binary))
            batch = np.frombuffer(binary[:size], dtype=dtype).reshape(tensor.shape)
        else:
            batch = np.asarray(tensor.data, dtype=dtype).reshape(tensor.shape)
    except (ValueError, TypeError) as exc:
        raise V2Error(400, f"input data does not fill shape {tensor.shape}: {exc}") from exc
    batch = batch.astype(np.float32, copy=False)
    if not np.isfinite(batch).all():
        raise V2Error(400, "input contains non-finite values")
    return batch


def request_priority(request: InferRequest) -> str:
    try:
        return parse_priority((request.parameters or {}).get("priority"))
    except PriorityError as exc:
        raise V2Error(400, str(exc)) from exc


def wants_binary_output(request: InferRequest) -> bool:
    if (request.parameters or {}).get("binary_data_output"):
        return True
    return any((o.get("parameters") or {}).get("binary_data") for o in request.outputs or [])


def infer_response(
    metadata: dict, request: InferRequest, probabilities: np.ndarray, extra: dict | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the v2 answer: JSON, or JSON header + raw float32 bytes."""
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
    output = {"name": metadata["outputs"][0]["name"], "datatype": "FP32", "shape": list(probabilities.shape)}
    answer: dict[str, Any] = {
        "model_name": metadata["name"],
        "model_version": str(metadata["versions"][0]),
        "outputs": [output],
    }
    if request.id is not None:
        answer["id"] = request.id
    if extra:
        answer["parameters"] = extra
    if not wants_binary_output(request):
        output["data"] = probabilities.ravel().tolist()
        return json.dumps(answer).encode(), {"content-type": "application/json"}
    raw = probabilities.tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(answer).encode()
    return header + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def check_version(metadata: dict, version: str | None) -> None:
    if version is not None and version not in [str(v) for v in metadata["versions"]]:
        raise V2Error(
            404,
            f"model {metadata['name']!r} version {version} is not served here; "
            f"serving version {', '.join(map(str, metadata['versions']))}",
        )


def model_metadata(name: str, identity: dict, labels: list[str], input_shape: list[int]) -> dict:
    """v2 model metadata for a network with one input (batch first) and one probability output."""
    return {
        "name": name,
        "versions": [str(identity.get("version"))],
        "platform": identity.get("backend", ""),
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *input_shape]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]}],
        "parameters": {"labels": labels, "architecture": identity.get("architecture"), "demo": identity.get("demo")},
    }


InferFn = Callable[[np.ndarray, str], Awaitable[tuple[np.ndarray, dict | None]]]


async def run_infer(
    metadata: dict, infer: InferFn, body: bytes, header_length: str | None, version: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """One v2 infer call end to end: parse, check, run ``infer(batch, priority)`` → (probabilities,
    timing or None; the timing goes back as response parameters), encode."""
    check_version(metadata, version)
    request, binary = parse_infer(body, header_length)
    batch = input_batch(request, binary, metadata)
    probabilities, timing = await infer(batch, request_priority(request))
    return infer_response(metadata, request, probabilities, timing)


def error_response(exc: V2Error) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


# --- auth where there is no FastAPI (a model deployment answering v2 directly) ------------------------
class RawAccessAuth:
    """Bearer-token check for raw model access: a valid token of a datasci or admin user, not
    revoked. Revocations are read from the database, cached for ``revocation_ttl_s`` per token so
    a batch-heavy client costs one lookup every few seconds, not one per request."""

    def __init__(self, tokens, db, revocation_ttl_s: float = 5.0):
        self.tokens, self.db, self.ttl = tokens, db, revocation_ttl_s
        self._checked: dict[str, tuple[float, bool]] = {}

    def __call__(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise V2Error(401, "missing bearer token")
        try:
            who = self.tokens.verify(token.strip())
        except AuthError as exc:
            raise V2Error(401, str(exc)) from exc
        now = time.monotonic()
        checked_at, revoked = self._checked.get(who.token_id, (-1e9, False))
        if now - checked_at > self.ttl:
            revoked = token_revoked(self.db, who.token_id)
            if len(self._checked) > 10_000:
                self._checked.clear()
            self._checked[who.token_id] = (now, revoked)
        if revoked:
            raise V2Error(401, "token revoked (logged out)")
        if who.role not in RAW_ROLES:
            raise V2Error(403, f"role {who.role!r} may not do this (needs {' or '.join(RAW_ROLES)})")
        return who


def route_model_request(path: str, prefix: str) -> tuple[str | None, str]:
    """Split a path under ``prefix`` (/v2/models/NAME) into (version or None, action: "" | "ready"
    | "infer"). Raises V2Error(404) for anything else."""
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    parts = [p for p in rest.split("/") if p]
    version = None
    if len(parts) >= 2 and parts[0] == "versions":
        version, parts = parts[1], parts[2:]
    if len(parts) > 1 or (parts and parts[0] not in ("ready", "infer")):
        raise V2Error(404, f"no such KServe v2 route: {path}")
    return version, parts[0] if parts else ""


def raw_metadata(task: str, identity: dict[str, Any], card: Any) -> dict[str, Any]:
    """v2 metadata of a served network described by its model card (labels, input shape)."""
    return model_metadata(task, identity, list(card.labels), [int(d) for d in list(card.input.shape)[1:]])

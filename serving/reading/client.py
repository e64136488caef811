"""The model client: how the ingress calls a model replica. Under Ray Serve a DeploymentHandle of
the model application (serving/replica/deployment.py); in-process (serving/local.py) the same
pre-reader called in a worker thread. Either way a call carries the caller's priority
(serving/priority.py) and is recorded in the ingress's metrics with the replica's timing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from models.read import PreRead
from serving import metrics
from serving.config import ServingConfig
from serving.priority import current_priority
from serving.replica.deployment import MODEL_DEPLOYMENTS, model_app_name
from serving.replica.kserve import raw_metadata
from serving.services import RawModel

ModelCall = Callable[..., Awaitable[Any]]


def model_handle(task: str) -> DeploymentHandle[Any]:
    # Not checked at creation: under `serve deploy` the model applications start beside the
    # ingress; calls wait until their replicas are up (readiness says so meanwhile).
    return serve.get_deployment_handle(MODEL_DEPLOYMENTS[task], app_name=model_app_name(task), _check_exists=False)


def model_caller(task: str, handle: DeploymentHandle[Any], method: str = "read") -> ModelCall:
    """An async function calling ``handle.<method>`` with the caller's priority (serving.priority)
    and recording the call in the ingress's metrics, with the replica's queue/compute timing."""
    remote = getattr(handle, method)

    async def call(payload: Any, priority: str | None = None) -> Any:
        started = time.perf_counter()
        try:
            result = await remote.remote(payload, priority or current_priority())
        except Exception:
            metrics.record_model_call(task, method, time.perf_counter() - started, None, ok=False)
            raise
        timing = result.timing if isinstance(result, PreRead) else result[1]
        metrics.record_model_call(task, method, time.perf_counter() - started, timing)
        return result

    return call


InferFn = Callable[[np.ndarray, str], Awaitable[tuple[np.ndarray, dict[str, Any] | None]]]


def raw_model(cfg: ServingConfig, task: str, infer: InferFn) -> RawModel:
    """KServe v2 view of a served network, described from its registry card."""
    registered = cfg.registry.open().resolve(cfg.models[task].ref)  # the card only: no model download
    identity = {
        "version": registered.version,
        "architecture": registered.card.architecture,
        "backend": cfg.models[task].backend,
        "demo": registered.card.demo,
    }
    return RawModel(raw_metadata(task, identity, registered.card), infer)

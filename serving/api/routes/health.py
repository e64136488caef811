"""Liveness, readiness and the Prometheus metrics: no auth."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from serving import metrics
from serving.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request) -> JSONResponse:
    svc = request.app.state.get_services()
    problems = []
    if svc is None:
        problems.append("service starting")
    else:
        try:
            svc.db.ping()
        except Exception as exc:  # noqa: BLE001 - report, don't crash: readiness is a question
            problems.append(f"database unreachable: {type(exc).__name__}")
        if not svc.store.writable():
            problems.append("object store not writable")
        problems += [f"model {name} not loaded" for name, ok in svc.models_ready.items() if not ok]
    status = 200 if not problems else 503
    return JSONResponse(Readiness(ready=not problems, problems=problems).model_dump(), status_code=status)


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus() -> PlainTextResponse:
    return PlainTextResponse(generate_latest(metrics.REGISTRY).decode(), media_type="text/plain; version=0.0.4")

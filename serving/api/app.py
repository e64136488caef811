"""The HTTP API (FastAPI): one router per resource under serving/api/routes/, the shared
dependencies in serving/api/deps.py, the shapes in serving/api/schemas.py.

``build_api(get_services)`` makes the app; ``get_services`` returns the replica's Services (or None
while it starts). Under Ray Serve the ingress builds it on each replica (serving/app.py:
``@serve.ingress(ingress_app)``); in-process, serving/local.py does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from serving import metrics
from serving.api.encoding import RequestDecompression
from serving.api.routes import (
    audit,
    dicomweb,
    ecg,
    exports,
    fhir,
    health,
    kserve,
    monitoring,
    reading,
    session,
    submissions,
    web,
    worklist,
)
from serving.services import Services
from serving.store.objects import StorageUnavailable

log = logging.getLogger("preread.api")

ROUTERS = (health.router, ecg.router, worklist.router, session.router, reading.router, submissions.router,
           exports.router, audit.router, fhir.router, dicomweb.router, kserve.router, monitoring.router, web.router)


def build_api(get_services: Callable[[], Services | None]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = get_services()
        if svc is not None:  # under Ray the replica's services may come later: login bootstraps then
            session.bootstrap(svc)
        yield

    app = FastAPI(title="preread", version="0.1.0", lifespan=lifespan,
                  description="AI pre-read service: ECGs and X-rays in, triaged preliminary reads out.")
    app.state.get_services = get_services
    _refuse_rather_than_half_accept(app)

    def inflated_limit() -> int:  # gzip/deflate request bodies: inflated no larger than any route accepts
        svc = get_services()
        return 1024**3 if svc is None else max(svc.config.dicom.max_stow_bytes, svc.config.limits.max_ecg_bytes)

    app.add_middleware(RequestDecompression, max_bytes=inflated_limit)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUESTS.labels(getattr(route, "path", "unmatched"), request.method, str(response.status_code)).inc()
        return response

    for router in ROUTERS:
        app.include_router(router)
    return app


def _refuse_rather_than_half_accept(app: FastAPI) -> None:
    """The database or the object store is down: 503 with the reason, never a 500, and nothing was
    acknowledged (ingest stores the object and commits its row before it answers 2xx)."""

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": {"reason": "database unavailable: nothing was stored or changed; "
                                                  "try again later", "error": type(exc).__name__}},
                            status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.error("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": {"reason": "storage unavailable: nothing was stored; try again later"}},
                            status_code=503, headers={"Retry-After": "30"})

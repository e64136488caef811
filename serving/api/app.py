"""The HTTP API (FastAPI): one router per resource under serving/api/routes/, the shared
dependencies in serving/api/deps.py, the shapes in serving/api/schemas.py.

``build_api(get_services)`` makes the app; ``get_services`` returns the replica's Services (or None
while it starts). Under Ray Serve the ingress builds it on each replica (serving/app.py:
``@serve.ingress(ingress_app)``); in-process, serving/local.py does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from serving import metrics
from serving.api.deps import log_view
from serving.api.encoding import RequestDecompression
from serving.api.routes import (
    audit,
    dicomweb,
    docs,
    ecg,
    exports,
    fhir,
    health,
    i18n,
    kserve,
    monitoring,
    reading,
    report,
    session,
    stow,
    submissions,
    web,
    worklist,
)
from serving.services import Services
from serving.store.objects import StorageUnavailable

log = logging.getLogger("preread.api")

ROUTERS = (
    health.router,
    ecg.router,
    worklist.router,
    session.router,
    reading.router,
    report.router,
    submissions.router,
    exports.router,
    audit.router,
    fhir.router,
    stow.router,
    dicomweb.router,
    kserve.router,
    monitoring.router,
    i18n.router,
    docs.router,
    web.router,
)


def build_api(get_services: Callable[[], Services | None]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = get_services()
        if svc is not None:  # under Ray the replica's services may come later: login bootstraps then
            session.bootstrap(svc)
        yield

    # /docs and /redoc come from serving/api/routes/docs.py (assets served here, no CDN)
    app = FastAPI(
        title="preread",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="AI pre-read service: ECGs and X-rays in, triaged preliminary reads out.",
    )
    app.state.get_services = get_services
    _refuse_rather_than_half_accept(app)

    def inflated_limit() -> int:  # gzip/deflate request bodies: inflated no larger than any route accepts
        svc = get_services()
        return 1024**3 if svc is None else max(svc.config.dicom.max_stow_bytes, svc.config.limits.max_ecg_bytes)

    def inflated_in_memory() -> int:  # beyond this the inflated body spills to disk, as the routes' spooling does
        svc = get_services()
        return 1024 * 1024 if svc is None else svc.config.limits.spool_in_memory_bytes

    app.add_middleware(RequestDecompression, max_bytes=inflated_limit, in_memory_bytes=inflated_in_memory)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUESTS.labels(getattr(route, "path", "unmatched"), request.method, str(response.status_code)).inc()
        return response

    @app.middleware("http")
    async def audit_refusals(request: Request, call_next):
        response = await call_next(request)
        path = request.url.path
        if response.status_code in REFUSALS and path.startswith(DATA_PATHS) and path not in OWN_AUDIT:
            await asyncio.to_thread(_record_refusal, get_services(), request, response.status_code)
        return response

    for router in ROUTERS:
        app.include_router(router)
    return app


# Every refused call to a data route is an audit event (docs/threat-model.md, R): who (when the token
# was genuine), from where, what, and the answer. Repeats of the same refusal are aggregated per window.
REFUSALS = frozenset({401, 403, 404})
DATA_PATHS = ("/api/", "/fhir/", "/dicomweb/", "/v2/")
OWN_AUDIT = frozenset({"/api/v1/login"})  # audits its failures itself (login_failed, login_locked)


def _record_refusal(svc: Services | None, request: Request, status: int) -> None:
    if svc is None:
        return
    who = getattr(request.state, "principal", None)
    try:
        log_view(svc, request, who, "refused", method=request.method, status=status)
    except Exception as exc:  # noqa: BLE001 - the refusal stands; losing its audit row must not turn it into a 500
        log.error("could not audit a refused %s %s: %s", request.method, request.url.path, type(exc).__name__)


def _refuse_rather_than_half_accept(app: FastAPI) -> None:
    """The database or the object store is down: 503 with the reason, never a 500, and nothing was
    acknowledged (ingest stores the object and commits its row before it answers 2xx)."""

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(
            {
                "detail": {
                    "reason": "database unavailable: nothing was stored or changed; try again later",
                    "error": type(exc).__name__,
                }
            },
            status_code=503,
            headers={"Retry-After": "30"},
        )

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.error("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": {"reason": "storage unavailable: nothing was stored; try again later"}},
            status_code=503,
            headers={"Retry-After": "30"},
        )

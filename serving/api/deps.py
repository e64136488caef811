"""FastAPI dependencies shared by every router under serving/api/routes/, as ``Annotated`` types
(the pattern of fastapi/full-stack-fastapi-template's ``api/deps.py``):

    def claim(study_uid: str, svc: ServicesDep, who: ReaderDep) -> ClaimOut: ...

The replica's services come from ``request.app.state.get_services`` (set by serving.api.app
.build_api), so the same routes run in a Ray Serve ingress replica and in-process.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Query, Request
from starlette.requests import ClientDisconnect

from serving import metrics
from serving.auth.tokens import AuthError, Principal
from serving.auth.users import token_revoked
from serving.ingest.ratelimit import limiter_for
from serving.ingest.spool import BodyTooLarge, spool
from serving.services import Services
from serving.store import audit
from serving.store.schema import Study

log = logging.getLogger(__name__)


def get_services(request: Request) -> Services:
    svc: Services | None = request.app.state.get_services()
    if svc is None:
        raise HTTPException(503, "service starting")
    return svc


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(request: Request, svc: ServicesDep) -> Principal:
    """The caller, from a valid, unrevoked bearer token (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    try:
        who = svc.tokens.verify(token.strip())
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    if token_revoked(svc.db, who.token_id):
        raise HTTPException(401, "token revoked (logged out)", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = who
    return who


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: str) -> Callable[..., Principal]:
    """A dependency: the caller, who must have one of ``roles`` (403 otherwise)."""

    def dependency(who: PrincipalDep) -> Principal:
        if who.role not in roles:
            raise HTTPException(403, f"role {who.role!r} may not do this (needs {' or '.join(roles)})")
        return who

    return dependency


# The roles each kind of route admits (docs/threat-model.md: the authorization matrix).
SenderDep = Annotated[Principal, Depends(require("grassroots", "admin"))]
ReaderDep = Annotated[Principal, Depends(require("reader", "admin"))]
# Identified study data (API, FHIR, DICOMweb): never datasci, who gets de-identified exports only.
ViewerDep = Annotated[Principal, Depends(require("reader", "grassroots", "admin"))]
RefuserDep = Annotated[Principal, Depends(require("grassroots", "reader", "admin"))]
DatasciDep = Annotated[Principal, Depends(require("datasci", "admin"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]

# Paging of list answers: ``limit`` items from ``offset``; a page holds at most 1000 items.
PageLimit = Annotated[int, Query(ge=1, le=1000)]
PageOffset = Annotated[int, Query(ge=0)]


def client_of(request: Request) -> str:
    host = request.client.host if request.client else "?"
    forwarded = request.headers.get("x-forwarded-for")
    return f"{host} via {forwarded.split(',')[0].strip()}"[:64] if forwarded else host


def log_action(
    svc: Services, request: Request, who: Principal | None, action: str, study_uid: str | None = None, **detail: Any
) -> None:
    audit.record(
        svc.db,
        action,
        user=who.user if who else detail.pop("user", None),
        role=who.role if who else None,
        study_uid=study_uid,
        detail={"path": request.url.path, "method": request.method, **detail},
        client=client_of(request),
    )


def log_view(
    svc: Services,
    request: Request,
    who: Principal | None,
    action: str,
    study_uid: str | None = None,
    **detail: Any,
) -> None:
    """An access that a page or client repeats (the worklist poll, DICOMweb reads, refusals): identical
    ones are aggregated per window (``audit.view_window_seconds``, serving/store/audit.py record_view)."""
    audit.record_view(
        svc.db,
        action,
        svc.config.audit.view_window_seconds,
        user=who.user if who else None,
        role=who.role if who else None,
        study_uid=study_uid,
        client=client_of(request),
        detail={"path": request.url.path, **detail},
    )


def study_for(svc: Services, who: Principal, study_uid: str) -> Study:
    """The study, if the caller may see its site; another site's study answers 404 as if it did not exist."""
    study = svc.db.get_study(study_uid)
    if study is None or not who.can_access_site(study.site):
        raise HTTPException(404, f"no study {study_uid} for this user")
    return study


def only_site(who: Principal) -> str | None:
    """The caller's site when the token names exactly one."""
    return who.sites[0] if len(who.sites) == 1 and who.sites[0] != "*" else None


def enforce_rate_limit(svc: Services, site: str, kind: Literal["http", "dicom"] = "http") -> None:
    """429 with Retry-After when ``site`` is over its ingest rate (serving/ingest/ratelimit.py)."""
    wait = limiter_for(svc, kind).check(site)
    if wait > 0:
        metrics.REJECTED.labels(kind.upper(), "rate_limit").inc()
        raise HTTPException(
            429,
            detail={
                "field": "site",
                "reason": f"site {site!r} is over its ingest rate limit; retry in {math.ceil(wait)} s",
            },
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def spool_body(request: Request, limit: int, what: str) -> tempfile.SpooledTemporaryFile[bytes]:
    """The request body in a spooled temporary file (in memory up to ``limits.spool_in_memory_bytes``, then
    on disk), refused with 413 as soon as it passes ``limit`` bytes (serving/ingest/spool.py)."""
    in_memory = request.app.state.get_services().config.limits.spool_in_memory_bytes
    try:
        return await spool(request.stream(), limit, in_memory)
    except BodyTooLarge as exc:
        raise HTTPException(413, f"{what} body exceeds the limit of {limit} bytes") from exc
    except ClientDisconnect as exc:  # a sender on a thin link lost its connection: nothing was stored
        log.info("the client went away during a %s upload to %s; nothing stored", what, request.url.path)
        raise HTTPException(400, f"the {what} body ended early: the connection closed before it was complete") from exc


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body as one bytes object (its chunks never held beside it), refused with 413 as soon
    as it passes ``limit`` bytes."""
    with await spool_body(request, limit, what) as body:
        data: bytes = body.read()
        return data

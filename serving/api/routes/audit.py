"""The audit trail for admins: entries and the hash chain's verdict."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from serving.api.deps import AdminDep, PageOffset, ServicesDep, log_action
from serving.api.schemas import AuditLog, ChainCheckOut
from serving.store import audit

router = APIRouter(tags=["audit"])


@router.get("/api/v1/audit", response_model=AuditLog)
def audit_log(
    request: Request,
    svc: ServicesDep,
    who: AdminDep,
    limit: int = Query(200, ge=1, le=5000),
    offset: PageOffset = 0,
    user: str | None = None,
    action: str | None = None,
    study: str | None = None,
) -> AuditLog:
    found = audit.entries(svc.db, limit=limit, offset=offset, user=user, action=action, study_uid=study)
    check = audit.verify_chain(svc.db)
    log_action(svc, request, who, "view_audit")
    return AuditLog(entries=[audit.as_dict(e) for e in found], count=len(found), chain=ChainCheckOut(**check.as_dict()))


@router.get("/api/v1/audit/verify", response_model=ChainCheckOut)
def audit_verify(svc: ServicesDep, who: AdminDep) -> ChainCheckOut:
    return ChainCheckOut(**audit.verify_chain(svc.db).as_dict())

"""Sign in and out: POST /api/v1/login, /api/v1/logout, GET /api/v1/me."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request

from serving.api.deps import PrincipalDep, ServicesDep, client_of, log_action
from serving.api.schemas import LoginBody, LoginOut, LogoutOut, Me
from serving.auth import users
from serving.auth.throttle import LoginThrottle, audited_failures
from serving.config import ServingConfig
from serving.services import Services
from serving.store import audit
from serving.store.schema import utcnow

router = APIRouter(tags=["auth"])


def initial_passwords_file(cfg: ServingConfig) -> Path:
    """Where generated bootstrap passwords are written (0600, beside the token secret; never logged)."""
    return Path(cfg.auth.secret_file).parent / "initial-passwords.txt"


def bootstrap(svc: Services) -> None:
    users.ensure_bootstrap_users(svc.db, svc.config.auth.users, initial_passwords_file(svc.config))


@router.post("/api/v1/login", response_model=LoginOut)
def login(body: LoginBody, request: Request, svc: ServicesDep) -> LoginOut:
    bootstrap(svc)
    refuse_if_locked(svc, request, body.username[:128])
    try:
        user = users.authenticate(svc.db, body.username, body.password)
    except users.LoginFailed:
        audit.record(
            svc.db,
            "login_failed",
            user=body.username[:128],
            detail={"path": request.url.path},
            client=client_of(request),
        )
        raise HTTPException(401, "unknown user or wrong password") from None
    ttl = timedelta(hours=svc.config.auth.login_ttl_hours)
    sites = list(user.sites or []) or (["*"] if user.role == "admin" else [])
    token = svc.tokens.issue(user.username, user.role, sites, ttl=ttl)
    audit.record(
        svc.db,
        "login",
        user=user.username,
        role=user.role,
        detail={"path": request.url.path},
        client=client_of(request),
    )
    return LoginOut(
        token=token,
        token_type="bearer",
        user=user.username,
        display_name=user.display_name,
        role=user.role,
        sites=sites,
        expires_at=(utcnow() + ttl).isoformat(),
    )


def refuse_if_locked(svc: Services, request: Request, username: str) -> None:
    """429 with Retry-After while the account or the client address is locked out after failed logins
    (serving/auth/throttle.py); the password is not even checked, and the refusal is audited."""
    client = client_of(request)
    lock = LoginThrottle(svc.config.auth.login_throttle, audited_failures(svc.db)).check(username, client, utcnow())
    if lock is None:
        return
    audit.record(
        svc.db,
        "login_locked",
        user=username,
        client=client,
        detail={
            "path": request.url.path,
            "scope": lock.scope,
            "failures": lock.failures,
            "retry_after_s": round(lock.retry_after_s),
        },
    )
    wait = max(1, math.ceil(lock.retry_after_s))
    raise HTTPException(
        429,
        f"too many failed logins for this {lock.scope}: locked, try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


@router.post("/api/v1/logout", response_model=LogoutOut)
def logout(request: Request, svc: ServicesDep, who: PrincipalDep) -> LogoutOut:
    longest = max(svc.config.auth.token_ttl_hours, svc.config.auth.login_ttl_hours)
    users.revoke(svc.db, who.token_id, utcnow() + timedelta(hours=longest))
    log_action(svc, request, who, "logout")
    return LogoutOut(revoked=who.token_id)


@router.get("/api/v1/me", response_model=Me)
def me(svc: ServicesDep, who: PrincipalDep) -> Me:
    return Me(
        user=who.user,
        role=who.role,
        sites=list(who.sites),
        poll_seconds=svc.config.worklist.poll_seconds,
        claim_minutes=svc.config.worklist.claim_minutes,
    )

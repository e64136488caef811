"""FastAPI dependencies shared by every router: the replica's services and the caller's identity.

Each router module exposes ``build_router(deps: ApiDeps) -> APIRouter``; serving/api.py includes them.
"""

# No `from __future__ import annotations`: FastAPI (0.16x) builds the dependants of included
# routers lazily, and under Ray Serve these closures reach the replica pickled by value with only
# the globals their code names, so a string annotation such as "Request" would not resolve there
# (the parameter then turns into a required query parameter: 422 on every call).
from dataclasses import dataclass
from typing import Callable

from fastapi import Depends, HTTPException, Request

from serving.auth import AuthError, Principal
from serving.services import Services


@dataclass
class ApiDeps:
    get_services: Callable[[], Services | None]

    def services(self) -> Callable[[], Services]:
        def dependency() -> Services:
            svc = self.get_services()
            if svc is None:
                raise HTTPException(503, "service starting")
            return svc
        return dependency

    def principal(self) -> Callable[..., Principal]:
        services = self.services()

        def dependency(request: Request, svc: Services = Depends(services)) -> Principal:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
            try:
                who = svc.tokens.verify(token.strip())
            except AuthError as exc:
                raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
            from serving.worklist.users import token_revoked

            if token_revoked(svc.db, who.token_id):
                raise HTTPException(401, "token revoked (logged out)", headers={"WWW-Authenticate": "Bearer"})
            request.state.principal = who
            return who
        return dependency

    def require(self, *roles: str) -> Callable[..., Principal]:
        principal = self.principal()

        def dependency(who: Principal = Depends(principal)) -> Principal:
            if who.role not in roles:
                raise HTTPException(403, f"role {who.role!r} may not do this (needs {' or '.join(roles)})")
            return who
        return dependency

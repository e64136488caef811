"""Access tokens: JWT (HS256) signed with the deployment's secret, carrying role and sites.

Roles: grassroots (sends for its own sites, sees their results), reader (reads the worklist of its
sites), datasci (de-identified exports), admin (everything). ``sites`` may be ["*"] for all sites.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import jwt

Role = Literal["grassroots", "reader", "datasci", "admin"]
ROLES: tuple[str, ...] = ("grassroots", "reader", "datasci", "admin")
ISSUER = "preread"


class AuthError(Exception):
    """Missing, malformed, expired or wrongly signed token (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    user: str
    role: Role
    sites: tuple[str, ...]
    token_id: str

    def can_access_site(self, site: str) -> bool:
        return self.role == "admin" or "*" in self.sites or site in self.sites

    def site_scope(self) -> list[str] | None:
        """Sites this principal may see; None means every site."""
        return None if self.role == "admin" or "*" in self.sites else list(self.sites)


def load_secret(secret_file: str | Path) -> str:
    """$PREREAD_SECRET, else the secret file, created with 0600 permissions on first use."""
    env = os.environ.get("PREREAD_SECRET")
    if env:
        return env
    path = Path(secret_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class SecretMissing(Exception):
    """The deployment's secret is not where a command that only uses it looked (never created there)."""


def read_secret(candidates: list[Path]) -> str:
    """$PREREAD_SECRET, else the first existing secret file among ``candidates``. Never creates one: a
    token signed with a new secret is refused by the running service, so a missing secret is an error."""
    env = os.environ.get("PREREAD_SECRET")
    if env:
        return env
    for path in candidates:
        if Path(path).is_file():
            return Path(path).read_text().strip()
    tried = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise SecretMissing(
        f"no deployment secret found (looked at {tried}). Run this from the service's working "
        "directory, pass the running service's config with --config or $PREREAD_CONFIG, or set "
        "$PREREAD_SECRET; no new secret is created (the service would refuse its tokens)"
    )


class TokenService:
    def __init__(self, secret: str, ttl_hours: float = 12.0):
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 characters")
        self._secret = secret
        self.ttl = timedelta(hours=ttl_hours)

    def issue(self, user: str, role: str, sites: list[str] | tuple[str, ...], ttl: timedelta | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not sites and role != "admin":
            raise ValueError("a token needs at least one site (or '*')")
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "sub": user,
            "role": role,
            "sites": list(sites),
            "iat": now,
            "exp": now + (ttl or self.ttl),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def pseudonym(self, value: str, length: int = 24) -> str:
        """A stable keyed pseudonym (HMAC-SHA256 with the deployment's secret) for de-identified exports:
        the same value maps to the same pseudonym, and nobody without the secret can reverse or recompute it."""
        return hmac.new(self._secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:length]

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["exp", "sub", "iss"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if claims.get("role") not in ROLES:
            raise AuthError("invalid token: unknown role")
        return Principal(claims["sub"], claims["role"], tuple(claims.get("sites") or ()), claims.get("jti", ""))

"""Users with argon2-hashed passwords, login, token revocation, and the bootstrap of demo users."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from serving.auth.tokens import ROLES
from serving.store.db import Database
from serving.store.schema import RevokedToken, User, utcnow

log = logging.getLogger("preread.users")

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so a login's timing does not tell
# whether a username is known.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class LoginFailed(Exception):
    """Unknown user, wrong password or inactive account (always the same message)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(
    db: Database, username: str, password: str, role: str, sites: list[str], display_name: str | None = None
) -> User:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    with db.session() as session:
        user = User(
            username=username,
            password_hash=hash_password(password),
            role=role,
            sites=list(sites),
            display_name=display_name,
            active=True,
        )
        session.add(user)
    return user


def get_user(db: Database, username: str) -> User | None:
    with db.session() as session:
        return session.scalar(select(User).where(User.username == username))


def authenticate(db: Database, username: str, password: str) -> User:
    user = get_user(db, username)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
        raise LoginFailed("unknown user or wrong password") from exc
    if user is None or not user.active:
        raise LoginFailed("unknown user or wrong password")
    if _hasher.check_needs_rehash(user.password_hash):
        with db.session() as session:
            session.get(User, user.id).password_hash = hash_password(password)
    return user


# --- revocation ---------------------------------------------------------------------------------
def revoke(db: Database, jti: str, expires_at: datetime | None = None) -> None:
    if not jti:
        return
    try:
        with db.session() as session:
            if session.get(RevokedToken, jti) is None:
                session.add(RevokedToken(jti=jti, expires_at=expires_at))
    except IntegrityError:
        pass  # revoked twice at once: it is revoked


def token_revoked(db: Database, jti: str) -> bool:
    if not jti:
        return False
    with db.session() as session:
        return session.get(RevokedToken, jti) is not None


def purge_revoked(db: Database, now: datetime | None = None) -> int:
    """Drop revocations of tokens that have expired anyway."""
    now = now or utcnow()
    if db.engine.dialect.name == "sqlite":
        now = now.astimezone(UTC).replace(tzinfo=None)
    with db.session() as session:
        return session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now)).rowcount


def _keep_password(path: Path | None, username: str, password: str) -> str:
    """Append a generated password to the 0600 file an operator reads once; say where it is."""
    if path is None:
        return "nowhere (no password file configured: reset it)"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(f"{username} {password}\n")
    os.chmod(path, 0o600)
    return str(path)


# --- bootstrap ----------------------------------------------------------------------------------
_bootstrapped: set[int] = set()
_bootstrap_lock = threading.Lock()


def ensure_bootstrap_users(db: Database, users, password_file: Path | None = None) -> dict[str, str]:
    """Create the configured bootstrap users that do not exist yet (once per process and database).

    A user's password comes from the environment variable named in its ``password_env``; when that is
    unset a random one is generated and appended to ``password_file`` (created 0600, beside the token
    secret) — never to a log, and only its argon2 hash is stored. Returns {username: generated
    password} for users created with a generated password."""
    key = id(db)
    if key in _bootstrapped:
        return {}
    generated: dict[str, str] = {}
    with _bootstrap_lock:
        if key in _bootstrapped:
            return {}
        for spec in users:
            if get_user(db, spec.username) is not None:
                continue
            password = os.environ.get(spec.password_env or "", "") if spec.password_env else ""
            if not password:
                password = secrets.token_urlsafe(12)
                generated[spec.username] = password
            try:
                create_user(db, spec.username, password, spec.role, list(spec.sites), spec.display_name)
            except IntegrityError:
                generated.pop(spec.username, None)
                continue
            if spec.username in generated:
                where = _keep_password(password_file, spec.username, password)
                log.warning(
                    "created user %r (role %s, sites %s) with a generated password, in %s — set $%s to choose it",
                    spec.username,
                    spec.role,
                    ",".join(spec.sites),
                    where,
                    spec.password_env or "PREREAD_<USER>_PASSWORD",
                )
        _bootstrapped.add(key)
    return generated

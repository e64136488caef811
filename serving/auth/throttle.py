"""Login throttling: per account and per client address, with lockout (configs: auth.login_throttle).

Failed logins are already in the audit trail (``login_failed``, with the user and the client), which
every ingress replica shares: counting them there makes the limit hold across replicas and restarts
(an in-process counter would give an attacker N replicas times the tries). The decision itself is a
pure function of those failure times, so it is tested without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select

from serving.config_access import LoginThrottleConfig
from serving.store.db import Database, as_utc
from serving.store.schema import AuditEntry

FAILED_LOGIN = "login_failed"

Scope = Literal["account", "client"]
# (account, client, since) → (failure times of that account, failure times from that client) since then
FailureLookup = Callable[[str, str, datetime], tuple[Sequence[datetime], Sequence[datetime]]]


@dataclass(frozen=True)
class Lockout:
    scope: Scope
    retry_after_s: float
    failures: int


def locked_for(failures: Sequence[datetime], limit: int, lockout_s: float, now: datetime) -> float:
    """Seconds this key stays locked: ``limit`` or more failures in the window lock it for
    ``lockout_s`` after the latest one; 0 when not locked."""
    if len(failures) < limit:
        return 0.0
    until = max(failures) + timedelta(seconds=lockout_s)
    return max(0.0, (until - now).total_seconds())


class LoginThrottle:
    def __init__(self, cfg: LoginThrottleConfig, failures: FailureLookup):
        self.cfg, self.failures = cfg, failures

    def check(self, account: str, client: str, now: datetime) -> Lockout | None:
        """The lockout that applies to a login attempt now, or None when it may try."""
        if not self.cfg.enabled:
            return None
        since = now - timedelta(seconds=max(self.cfg.window_seconds, self.cfg.lockout_seconds))
        by_account, by_client = self.failures(account, client, since)
        window_start = now - timedelta(seconds=self.cfg.window_seconds)
        checks: list[tuple[Scope, Sequence[datetime], int]] = [
            ("account", by_account, self.cfg.max_failures_per_account),
            ("client", by_client, self.cfg.max_failures_per_client),
        ]
        for scope, times, limit in checks:
            recent = [t for t in times if t >= window_start]
            wait = locked_for(recent, limit, self.cfg.lockout_seconds, now)
            if wait > 0:
                return Lockout(scope, wait, len(recent))
        return None


def audited_failures(db: Database) -> FailureLookup:
    """Failure times from the audit trail (``login_failed`` rows: user = the account tried, client = the
    address), shared by every replica."""

    def lookup(account: str, client: str, since: datetime) -> tuple[list[datetime], list[datetime]]:
        query = select(AuditEntry.user, AuditEntry.client, AuditEntry.at).where(
            AuditEntry.action == FAILED_LOGIN,
            AuditEntry.at >= since,
            or_(AuditEntry.user == account, AuditEntry.client == client),
        )
        with db.session() as session:
            rows = session.execute(query).all()
        by_account = [as_utc(at) for user, _, at in rows if user == account]
        by_client = [as_utc(at) for _, where, at in rows if where == client]
        return by_account, by_client

    return lookup

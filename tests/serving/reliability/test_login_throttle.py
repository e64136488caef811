"""Login throttling decisions (serving/auth/throttle.py): per account and per client address, lockout after
the limit, lifted when it has run out; counted from the audited failures the replicas share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.auth.throttle import LoginThrottle, locked_for
from serving.config_access import LoginThrottleConfig

pytestmark = pytest.mark.reliability

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CFG = LoginThrottleConfig(
    max_failures_per_account=5, max_failures_per_client=20, window_seconds=900, lockout_seconds=600
)


def throttle(account_failures: list[datetime], client_failures: list[datetime], cfg=CFG) -> LoginThrottle:
    seen = {}

    def lookup(account, client, since):
        seen["since"] = since
        return [t for t in account_failures if t >= since], [t for t in client_failures if t >= since]

    t = LoginThrottle(cfg, lookup)
    t.seen = seen
    return t


def ago(*seconds: float) -> list[datetime]:
    return [NOW - timedelta(seconds=s) for s in seconds]


def test_under_the_limit_anyone_may_try():
    assert throttle(ago(10, 20, 30, 40), ago(10, 20, 30, 40)).check("dr-zhao", "10.0.0.5", NOW) is None


def test_five_failures_lock_the_account_for_the_lockout_after_the_last():
    lock = throttle(ago(5, 20, 30, 40, 50), ago(5, 20, 30, 40, 50)).check("dr-zhao", "10.0.0.5", NOW)
    assert lock is not None and lock.scope == "account" and lock.failures == 5
    assert lock.retry_after_s == pytest.approx(595)


def test_the_lock_lifts_when_the_lockout_has_run_out():
    assert throttle(ago(601, 620, 630, 640, 650), []).check("dr-zhao", "10.0.0.5", NOW) is None


def test_old_failures_outside_the_window_do_not_count():
    assert throttle(ago(5, 1000, 1100, 1200, 1300), []).check("dr-zhao", "10.0.0.5", NOW) is None


def test_one_address_trying_many_accounts_is_locked_by_address():
    lock = throttle(ago(3), ago(*range(3, 63, 3))).check("someone-new", "10.0.0.66", NOW)
    assert lock is not None and lock.scope == "client" and lock.failures == 20


def test_disabled_throttle_never_locks():
    cfg = CFG.model_copy(update={"enabled": False})
    assert throttle(ago(*range(1, 50)), ago(*range(1, 50)), cfg).check("a", "b", NOW) is None


def test_locked_for_is_zero_below_the_limit():
    assert locked_for(ago(1, 2), 3, 60, NOW) == 0.0
    assert locked_for(ago(1, 2, 3), 3, 60, NOW) == pytest.approx(59)

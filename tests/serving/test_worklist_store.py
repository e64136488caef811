"""Worklist ordering, aging escalation and idempotent accept, on the real store (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from serving.store.db import Aging, Database, NewInstance
from serving.store.schema import Study
from serving.store.work import WorkQueue


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'w.db'}")
    database.migrate()
    return database


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def add(db: Database, uid: str, level: str | None, score: float | None, waited_min: float, site="demo"):
    db.accept_instance(NewInstance(f"{uid}.1", uid, site, "ECG", "application/json", f"k{uid}", "h", 1, "http"))
    if level is not None:
        assert WorkQueue(db).record_read(uid, {"findings": []}, level, score, "ecg", "1")
    with db.session() as s:
        s.execute(update(Study).where(Study.study_uid == uid).values(arrived_at=NOW - timedelta(minutes=waited_min)))


def order(db, **kw):
    return [s.study_uid for s in db.worklist(kw.pop("sites", ["demo"]), Aging(), NOW, **kw)]


def test_order_is_level_then_score_then_waiting(db):
    add(db, "r-low", "routine", 0.1, 5)
    add(db, "u-old", "urgent", 0.6, 30)
    add(db, "c-low", "critical", 0.81, 1)
    add(db, "c-high", "critical", 0.95, 1)
    add(db, "u-new", "urgent", 0.6, 2)
    add(db, "r-high", "routine", 0.3, 5)
    assert order(db) == ["c-high", "c-low", "u-old", "u-new", "r-high", "r-low"]


def test_aging_escalates_and_level_filter_follows_the_shown_level(db):
    add(db, "routine-waited-5h", "routine", 0.1, 270)  # > 240, < 240+60 → urgent
    add(db, "urgent-waited-2h", "urgent", 0.5, 120)  # > 60 → critical
    add(db, "critical-fresh", "critical", 0.9, 1)
    add(db, "urgent-fresh", "urgent", 0.7, 1)
    assert order(db) == ["critical-fresh", "urgent-waited-2h", "urgent-fresh", "routine-waited-5h"]
    assert order(db, level="critical") == ["critical-fresh", "urgent-waited-2h"]
    assert order(db, level="urgent") == ["urgent-fresh", "routine-waited-5h"]
    aging = Aging()
    level, reason, overdue = aging.effective("routine", NOW - timedelta(minutes=270), NOW)
    assert level == "urgent" and "routine limit" in reason and not overdue
    assert aging.effective("critical", NOW - timedelta(minutes=20), NOW)[2] is True
    assert aging.effective("routine", NOW - timedelta(minutes=300), NOW)[0] == "critical"


def test_nothing_is_hidden_studies_without_a_read_are_listed(db):
    add(db, "no-read-yet", None, None, 10)
    add(db, "read", "routine", 0.2, 1)
    assert set(order(db)) == {"no-read-yet", "read"}


def test_site_scope(db):
    add(db, "mine", "routine", 0.2, 1, site="demo")
    add(db, "theirs", "critical", 0.9, 1, site="other")
    assert order(db, sites=["demo"]) == ["mine"]
    assert order(db, sites=None) == ["theirs", "mine"]


def test_accept_is_idempotent_on_sop_instance_uid(db):
    new = NewInstance("1.2.3.4", "1.2.3", "demo", "ECG", "application/dicom", "k", "h", 10, "http")
    _, _, created = db.accept_instance(new)
    _, _, again = db.accept_instance(new)
    assert created is True and again is False
    assert db.count() == 1

"""The durable work queue on the real store, SQLite and PostgreSQL: leases, take-over of a dead
worker's study, exactly-once recording, retries with backoff, a visible ai_failed after the last try,
a patient's refusal of the AI read."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from serving.store import audit
from serving.store.db import Database, NewInstance
from serving.store.schema import utcnow
from serving.store.work import RetryPolicy, WorkQueue, ai_read_counts, refuse_ai
from tests.serving.worklist_fixtures import db_url, postgres_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.reliability
READ = {"findings": [], "triage": {"level": "routine", "score": 0.1}}


@pytest.fixture
def db(db_url) -> Database:  # noqa: F811
    database = Database(db_url)
    database.migrate()
    yield database
    database.engine.dispose()


def ecg(db: Database, uid: str, lease_by: str | None = None, no_ai: bool = False):
    return db.accept_instance(
        NewInstance(
            f"{uid}.1",
            uid,
            "demo",
            "ECG",
            "application/json",
            f"k{uid}",
            "h",
            1,
            "http",
            lease_by=lease_by,
            no_ai=no_ai,
        )
    )[0]


def queue(db, **kw) -> WorkQueue:
    kw.setdefault("policy", RetryPolicy(max_attempts=3, backoff_base_seconds=10, backoff_max_seconds=15))
    return WorkQueue(db, lease_seconds=kw.pop("lease_seconds", 30), stable_seconds=0, **kw)


def test_a_new_study_leased_by_its_accepting_worker_is_taken_over_only_when_the_lease_is_stale(db):
    first, second = queue(db), queue(db)
    ecg(db, "1.1", lease_by=first.worker_id)
    assert second.claim_due() == [], "a live lease was taken over"
    first.hold("1.1")
    later = utcnow() + timedelta(seconds=25)
    assert first.renew(now=later, force=True) == 1  # the worker is alive and renews while it reads
    assert second.claim_due(now=later + timedelta(seconds=20)) == [], "a renewed lease was taken over"
    dead = later + timedelta(seconds=31)  # the worker died: no renewal for lease_seconds
    assert second.claim_due(now=dead) == ["1.1"]
    study = db.get_study("1.1")
    assert study.processing_by == second.worker_id and study.ai_attempts == 2


def test_a_read_computed_twice_is_recorded_once(db):
    workers = [queue(db) for _ in range(4)]
    ecg(db, "2.1")
    results = []
    barrier = threading.Barrier(len(workers))

    def record(worker):
        barrier.wait()
        results.append(worker.record_read("2.1", READ, "urgent", 0.7, "ecg", "3"))

    threads = [threading.Thread(target=record, args=(w,)) for w in workers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [False, False, False, True]
    assert ai_read_counts(db, ["2.1"]) == {"2.1": 1}
    study = db.get_study("2.1")
    assert study.status == "ai_read" and study.level == "urgent" and study.processing_by is None
    assert audit.verify_chain(db).ok


def test_failures_back_off_then_stay_listed_as_ai_failed(db):
    worker = queue(db)
    ecg(db, "3.1")
    now = utcnow()
    for attempt in (1, 2, 3):
        assert worker.claim_due(now=now) == ["3.1"], f"attempt {attempt} not due"
        note = worker.record_failure("3.1", "RayActorError: replica died", now=now)
        study = db.get_study("3.1")
        assert study.status == "ai_failed" and "replica died" in study.ai_error, study.ai_error
        if attempt < 3:
            assert f"attempt {attempt} of 3" in note
            wait = (study.next_attempt_at.replace(tzinfo=now.tzinfo) - now).total_seconds()
            assert wait == pytest.approx(min(15, 10 * 2 ** (attempt - 1)), abs=1)
            assert worker.claim_due(now=now + timedelta(seconds=wait - 1)) == [], "retried before its time"
            now += timedelta(seconds=wait + 1)
    assert study.next_attempt_at is None and "no further automatic attempt (3 made)" in study.ai_error
    assert worker.claim_due(now=now + timedelta(days=1)) == []
    from serving.store.db import Aging

    listed = [s.study_uid for s in db.worklist(["demo"], Aging(), now)]
    assert listed == ["3.1"], "a study the model could not read vanished from the worklist"
    # A success on a later manual retry still records (a study failed before is not read twice).
    assert worker.record_read("3.1", READ, "routine", 0.1, "ecg", "3")
    assert db.get_study("3.1").status == "ai_read"


def test_a_study_whose_worker_keeps_dying_is_given_up_visibly(db):
    worker = queue(db, lease_seconds=5)
    ecg(db, "4.1")
    now = utcnow()
    for i in range(3):  # claimed, then the worker dies every time (no failure recorded)  # noqa: B007
        assert worker.claim_due(now=now) == ["4.1"]
        now += timedelta(seconds=6)
    assert worker.claim_due(now=now) == []
    assert worker.give_up_on_dead_leases(now=now) == 1
    study = db.get_study("4.1")
    assert study.status == "ai_failed" and "stopped 3 times" in study.ai_error


def test_a_patients_refusal_is_honoured_before_and_after_the_read(db):
    worker = queue(db)
    refused = ecg(db, "5.1", lease_by=worker.worker_id, no_ai=True)
    assert refused.status == "no_ai_read" and "declined" in refused.ai_error
    assert worker.claim_due() == [] and not worker.record_read("5.1", READ, "routine", 0.1, "ecg", "3")

    ecg(db, "5.2")
    assert worker.record_read("5.2", READ, "critical", 0.9, "ecg", "3")
    assert refuse_ai(db, "5.2")
    study = db.get_study("5.2")
    assert study.status == "no_ai_read" and study.ai_read is None and study.level is None
    assert worker.claim_due() == [], "a refused study was queued for a read again"

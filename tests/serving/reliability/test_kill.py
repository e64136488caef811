"""kill -9 in the middle of a load: every accepted ECG still gets exactly one AI read.

The ECG model replica of the session's Ray Serve app is killed (SIGKILL to the PID Ray's state API
reports) while ECGs are being posted. The ingress has accepted them (fsync'd + committed) before the
model is asked; reads that die with the replica are listed ai_failed with a retry time, the dispatcher's
sweep retries them once Serve has restarted the replica, and the conditional recording keeps it to
one read per study (counted as ai_read audit events).
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving.store.db import Database
from serving.store.work import ai_read_counts
from tests.serving.worklist_fixtures import ecg_json

pytestmark = [pytest.mark.reliability, pytest.mark.ray, pytest.mark.slow]


def _ecg_replica_pids() -> list[int]:
    """PIDs of the live ECG model replicas of *this* session's Ray instance, from its GCS actor
    table (ray.util.state would ask whichever dashboard it finds on the machine: maybe another
    process's cluster, whose replicas are not ours to kill)."""
    from ray._private.state import actors

    pids = [
        info["Pid"]
        for info in actors(actor_state_name="ALIVE").values()
        if "ecg-model" in str(info.get("ActorClassName")) and info.get("Pid")
    ]
    strangers = [pid for pid in pids if not _started_by_us(pid)]
    assert not strangers, f"replica PIDs {strangers} are not descendants of this test process"
    return pids


def _started_by_us(pid: int) -> bool:
    """Whether ``pid`` descends from this process (our Ray's raylet forks the replicas)."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the (command name)
    return False


def test_killing_the_ecg_model_replica_mid_load_loses_nothing(serve_client):
    headers = {"content-type": "application/json", **serve_client.auth()}
    bodies = [json.dumps(ecg_json(seed=900_000 + i)) for i in range(24)]
    pids = _ecg_replica_pids()
    assert pids, "no ECG model replica found through Ray's state API"

    def post(body: str):
        return serve_client.http.post("/api/v1/ecg", content=body, headers=headers)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post, body) for body in bodies]
        while sum(f.done() for f in futures) < 4:
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # mid-load: the rest are in flight or still to come
        answers = [f.result() for f in futures]
    assert all(r.status_code == 201 for r in answers), [r.status_code for r in answers if r.status_code != 201]
    uids = [r.json()["study_uid"] for r in answers]
    failed_inline = sum(r.json()["status"] == "ai_failed" for r in answers)

    db = Database(serve_client.cfg.database.url)
    deadline = time.time() + 300
    while time.time() < deadline:
        studies = [db.get_study(uid) for uid in uids]
        if all(s.read_at is not None for s in studies):
            break
        time.sleep(2)
    unread = [(s.study_uid, s.status, s.ai_error) for s in studies if s.read_at is None]
    assert not unread, f"accepted but never read after the replica died: {unread[:3]}"
    counts = ai_read_counts(db, uids)
    assert set(counts.values()) == {1}, f"read more or less than once: {counts}"
    assert _ecg_replica_pids(), "Serve did not restart the ECG replica"
    print(f"\n{failed_inline} of {len(uids)} reads failed with the replica and were retried; all read once")

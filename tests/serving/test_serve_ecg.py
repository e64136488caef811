"""The whole path on Ray Serve: real ECGs through HTTP → model deployment → worklist, and restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.readers import read_wfdb
from serving.store.db import Database, NewInstance
from serving.store.objects import ObjectStore
from tests.serving.conftest import cinc_records, cinc_zip

pytestmark = pytest.mark.ray

TACHY, BRADY = "427084000", "426177001"


def post(client, body: bytes, content_type: str):
    return client.http.post("/api/v1/ecg", content=body, headers={"content-type": content_type, **client.auth()})


def test_ready(serve_client):
    r = serve_client.http.get("/readyz")
    assert r.status_code == 200, r.text


def test_real_ecgs_reach_the_worklist_with_a_level(serve_client, cinc_dir):
    uids = {}
    r = post(serve_client, Path(get_testdata_file("waveform_ecg.dcm")).read_bytes(), "application/dicom")
    assert r.status_code in (200, 201), r.text
    uids["waveform_ecg.dcm"] = r.json()["study_uid"]
    for record in cinc_records(cinc_dir):
        r = post(serve_client, cinc_zip(cinc_dir, record), "application/zip")
        assert r.status_code in (200, 201), f"{record}: {r.text}"
        body = r.json()
        assert body["status"] == "ai_read", body
        uids[record] = body["study_uid"]
        labels = read_wfdb(cinc_dir / f"{record}.hea").labels
        heart_rate = body["read"]["measurements"]["heart_rate_bpm"]
        if TACHY in labels:
            assert heart_rate > 100, f"{record} is labelled sinus tachycardia; measured {heart_rate}"
        if BRADY in labels:
            assert heart_rate < 60, f"{record} is labelled sinus bradycardia; measured {heart_rate}"

    worklist = serve_client.http.get(
        "/api/v1/worklist", params={"limit": 1000}, headers=serve_client.auth(role="reader")
    ).json()
    listed = {item["study_uid"]: item for item in worklist["items"]}
    assert set(uids.values()) <= set(listed), "an accepted ECG is missing from the worklist"
    assert len(uids) == 31
    ranks = [("critical", "urgent", "routine").index(item["level"]) for item in worklist["items"]]
    assert ranks == sorted(ranks), "worklist not ordered by level"
    for uid in uids.values():
        assert listed[uid]["level"] in ("critical", "urgent", "routine")
        assert 0 <= listed[uid]["score"] <= 1


def test_restart_keeps_every_accepted_ecg_and_reads_what_was_pending(serve_client, cinc_dir):
    reader = serve_client.auth(role="reader")
    before = {
        i["study_uid"]
        for i in serve_client.http.get("/api/v1/worklist", params={"limit": 1000}, headers=reader).json()["items"]
    }
    assert before, "nothing accepted before the restart"

    # A crash between 'stored' and 'read': the original is on disk and its row says received.
    cfg = serve_client.cfg
    body = cinc_zip(cinc_dir, "HR06000")
    stored = ObjectStore(cfg.storage.root).put(body, ".zip")
    db = Database(cfg.database.url)
    db.accept_instance(
        NewInstance(
            "2.25.4242",
            "2.25.4243",
            "demo",
            "ECG",
            "application/zip",
            stored.key,
            stored.sha256,
            stored.size_bytes,
            "http",
            sender="crash-test",
        )
    )

    serve_client.stop()
    serve_client.restart()

    deadline = time.time() + 120
    while time.time() < deadline:
        study = db.get_study("2.25.4243")
        if study.status != "received":
            break
        time.sleep(0.5)
    assert study.status == "ai_read", f"pending ECG not read after restart: {study.status} {study.ai_error}"
    after = {
        i["study_uid"]
        for i in serve_client.http.get("/api/v1/worklist", params={"limit": 1000}, headers=reader).json()["items"]
    }
    assert before | {"2.25.4243"} <= after

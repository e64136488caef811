"""The sender's parts, each against what would break it: the durable queue (idempotent, survives a
restart, a full disk refuses new studies and keeps the queued ones), the watch folder and its
quarantine, lossless wire encodings, backoff, the service's answers (never / token / retry), results
and notifications, `--check`, and the service's compressed-body support."""

from __future__ import annotations

import gzip
import io
import json
import random
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from bench.county import sender_config
from bench.send_studies import cinc_zips, ptbxl_jsons, radiographs, waveform_dicoms
from preread.send.accept import Accepted, Refused
from preread.send.app import Sender
from preread.send.config import SendConfigError, load_send_config
from preread.send.parcel import Kind, identify
from preread.send.queue import SendQueue
from preread.send.upload import backoff_s
from preread.send.watch import FolderWatcher
from preread.send.wire import TokenBucket, compress_dicom, prepare, rezip


@pytest.fixture
def sender(tmp_path, county):
    s = Sender(load_send_config(sender_config(tmp_path, county, listener={"enabled": False})), bell=False)
    yield s
    s.client.close()
    s.queue.close()


def drain(sender: Sender, limit: int = 50) -> None:
    for _ in range(limit):
        if sender.upload_once() is None:
            return


# --- the queue ---------------------------------------------------------------------------------
def test_queue_is_idempotent_and_survives_a_restart(tmp_path, cinc_dir):
    study = cinc_zips(cinc_dir, 1)[0]
    queue = SendQueue(tmp_path / "q.db", tmp_path / "files")
    parcel = identify(study.data, study.name)
    first, again = queue.add(parcel, "test"), queue.add(parcel, "test")
    assert first.created and not again.created and first.item_id == again.item_id
    (tmp_path / "files" / ".incoming-crashed").write_bytes(b"half")  # a crash between write and commit
    queue.close()  # no clean shutdown of anything else: the row and the file are already durable
    reopened = SendQueue(tmp_path / "q.db", tmp_path / "files")
    item = reopened.next_due()
    assert item is not None and item.key == f"sha256:{parcel.sha256}" and reopened.read_bytes(item) == study.data
    assert not (tmp_path / "files" / ".incoming-crashed").exists()
    with sqlite3.connect(tmp_path / "q.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_disk_refuses_new_studies_and_keeps_the_queued(tmp_path, county, cinc_dir):
    config = sender_config(tmp_path, county, listener={"enabled": False})
    first, second = cinc_zips(cinc_dir, 2)
    sender = Sender(load_send_config(config), bell=False)
    assert isinstance(sender.intake.take(first.data, first.name, "test"), Accepted)
    sender.queue.reserve_bytes = 10**18  # as if the disk were full
    refused = sender.intake.take(second.data, second.name, "test")
    assert isinstance(refused, Refused) and "disk nearly full" in refused.reason
    inbox = tmp_path / "clinic" / "inbox"
    inbox.mkdir()
    (inbox / second.name).write_bytes(second.data)
    watcher = FolderWatcher(inbox, sender.intake)
    watcher.scan(), watcher.scan()
    assert (inbox / second.name).exists(), "a refused file must stay in the watch folder"
    drain(sender)
    assert [i["state"] for i in sender.queue.items()] == ["sent"]  # the queued one still went out
    sender.queue.reserve_bytes = 0
    watcher.scan()
    assert not (inbox / second.name).exists() and len(sender.queue.items()) == 2
    sender.queue.close()


# --- intake ------------------------------------------------------------------------------------
def test_watch_folder_quarantines_what_it_cannot_read_and_takes_loose_wfdb(tmp_path, cinc_dir):
    queue = SendQueue(tmp_path / "q.db", tmp_path / "files")
    from preread.send.accept import Intake

    intake = Intake(queue, tmp_path / "quarantine")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "notes.txt").write_bytes(b"the patient said hello")
    (inbox / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    for suffix in (".hea", ".mat"):
        (inbox / f"E07500{suffix}").write_bytes((cinc_dir / f"E07500{suffix}").read_bytes())
    (inbox / "copying.dcm.part").write_bytes(b"half a file")
    watcher = FolderWatcher(inbox, intake)
    assert watcher.scan() == 0  # nothing is taken until it stood still for one poll
    assert watcher.scan() == 3
    assert sorted(p.name for p in inbox.iterdir()) == ["copying.dcm.part"]
    reasons = {p.read_text().splitlines()[0]: p.read_text() for p in (tmp_path / "quarantine").glob("*.reason.txt")}
    assert set(reasons) == {"notes.txt", "broken.zip"}
    assert "zip that cannot be read" in reasons["broken.zip"]
    items = queue.items()
    assert [(i["kind"], i["label"]) for i in items] == [("ecg-zip", "E07500.zip")]
    with zipfile.ZipFile(io.BytesIO(queue.read_bytes(queue.next_due()))) as zf:
        assert sorted(zf.namelist()) == ["E07500.hea", "E07500.mat"]


def test_cstore_listener_queues_before_it_answers(tmp_path, county, nih_dir):
    from tests.send.conftest import wait_until
    from tests.send.e2e import cstore

    config = sender_config(tmp_path, county)
    sender = Sender(load_send_config(config), bell=False)
    sender.listener = None
    from preread.send.listener import CStoreListener

    listener = CStoreListener(sender.cfg.listener, sender.intake).start()
    try:
        film = radiographs(nih_dir, 1)[0]
        assert cstore(sender.cfg.listener.port, [film]) == [0]
        # acknowledged means already in the queue, durably
        wait_until(lambda: len(sender.queue.items()) == 1, 5, "the queued film")
        sender.queue.reserve_bytes = 10**18
        other = radiographs(nih_dir, 2)[1]
        assert cstore(sender.cfg.listener.port, [other]) == [0xA700]  # out of resources: the unit keeps it
    finally:
        listener.stop()
        sender.queue.close()


# --- bytes on the wire -------------------------------------------------------------------------
def test_wire_encodings_are_lossless_smaller_and_deterministic(nih_dir, cinc_dir, shared_data):
    film = radiographs(nih_dir, 1)[0].data
    small = compress_dicom(film)
    original, decoded = pydicom.dcmread(io.BytesIO(film)), pydicom.dcmread(io.BytesIO(small))
    assert len(small) < len(film) / 2
    assert decoded.SOPInstanceUID == original.SOPInstanceUID  # the same instance: idempotent at the county
    assert np.array_equal(decoded.pixel_array, original.pixel_array)
    assert compress_dicom(film) == small
    wave = waveform_dicoms(1)[0].data
    deflated = pydicom.dcmread(io.BytesIO(compress_dicom(wave)))
    assert deflated.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    assert np.array_equal(deflated.waveform_array(0), pydicom.dcmread(io.BytesIO(wave)).waveform_array(0))
    record = cinc_zips(cinc_dir, 1)[0].data
    assert len(rezip(record)) < len(record) and rezip(record) == rezip(record)
    with zipfile.ZipFile(io.BytesIO(rezip(record))) as a, zipfile.ZipFile(io.BytesIO(record)) as b:
        assert {n: a.read(n) for n in a.namelist()} == {n: b.read(n) for n in b.namelist()}
    doc = ptbxl_jsons(shared_data / "ecg" / "ptbxl", 0, 1)[0].data
    plain = prepare(Kind.ECG_JSON, doc, True, frozenset())
    zipped = prepare(Kind.ECG_JSON, doc, True, frozenset({"gzip"}))
    assert plain.content == doc and "Content-Encoding" not in plain.headers  # the service did not say it inflates
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.content) == doc
    assert len(zipped.content) < len(doc) / 2


def test_token_bucket_paces_to_its_rate(monkeypatch):
    clock = [1000.0]  # a fake clock: sleeping advances it
    monkeypatch.setattr("preread.send.wire.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("preread.send.wire.time.sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    bucket = TokenBucket(rate_bytes_s=32_000, burst=16_384)
    list(bucket.stream(b"x" * 160_000))
    assert clock[0] - 1000.0 == pytest.approx((160_000 - 16_384) / 32_000, rel=0.02)
    unlimited = TokenBucket(None)
    list(unlimited.stream(b"x" * 160_000))
    assert clock[0] - 1000.0 == pytest.approx((160_000 - 16_384) / 32_000, rel=0.02)


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(3)
    waits = [backoff_s(n, 2.0, 300.0, rng) for n in range(12)]
    assert all(1.0 * 2**n <= w <= 2.0 * 2**n for n, w in enumerate(waits[:7]))
    assert all(150.0 <= w <= 300.0 for w in waits[8:])
    assert len({round(w, 6) for w in waits}) == len(waits)


# --- the service's answers ---------------------------------------------------------------------
def test_never_answers_stop_that_study_only(sender, cinc_dir):
    bad = json.dumps({"sampling_rate": 500, "leads": {"I": [0.1, 0.2]}}).encode()  # far too short: 422
    good = cinc_zips(cinc_dir, 1)[0]
    sender.intake.take(bad, "short.json", "test")
    sender.intake.take(good.data, good.name, "test")
    drain(sender)
    states = {i["label"]: (i["state"], i["last_error"]) for i in sender.queue.items()}
    assert states["E07500.zip"][0] == "sent"
    assert states["short.json"][0] == "refused" and states["short.json"][1].startswith("HTTP 422")
    assert "refused by the service" in sender.cfg.notifications_file.read_text()


def test_a_bad_token_keeps_the_study_and_alerts(sender, county, cinc_dir):
    study = cinc_zips(cinc_dir, 1)[0]
    sender.cfg.token_file.write_text("not-a-token")
    sender.stop_event.set()  # handle() would wait out the backoff otherwise
    sender.intake.take(study.data, study.name, "test")
    sender.upload_once()
    (item,) = sender.queue.items()
    assert item["state"] == "queued" and item["last_error"].startswith("HTTP 401")
    assert "token" in sender.cfg.notifications_file.read_text()
    sender.cfg.token_file.write_text(county.token)
    with sqlite3.connect(sender.cfg.database_path) as conn:
        conn.execute("UPDATE items SET next_attempt_at = 0")
    sender.upload_once()
    assert sender.queue.items()[0]["state"] == "sent"


def test_results_come_back_and_the_signed_report_too(sender, county, cinc_dir, nih_dir):
    from tests.send.conftest import wait_until

    for study in cinc_zips(cinc_dir, 3) + radiographs(nih_dir, 1):
        sender.intake.take(study.data, study.name, "test")
    drain(sender)
    uids = [s["study_uid"] for s in sender.queue.studies()]
    assert len(uids) == 4

    def all_read():
        sender.results.poll_due()
        for s in sender.queue.studies():
            sender.queue.update_study(s["study_uid"], next_poll_at=0)
        return all(s["read_file"] for s in sender.queue.studies())

    wait_until(all_read, 120, "the AI reads")
    doctor = {"Authorization": f"Bearer {county.reader_token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{county.port}", headers=doctor) as http:
        assert http.post(f"/api/v1/studies/{uids[0]}/claim").status_code == 200
        signed = http.post(f"/api/v1/studies/{uids[0]}/sign", json={"agree": True, "impression": "sinus rhythm"})
        assert signed.status_code == 200, signed.text
    wait_until(all_read, 10, "the poll") and sender.results.poll_due()
    study = sender.queue.study(uids[0])
    # The county prints the signed report as a PDF (GET /api/v1/studies/{uid}/report.pdf): that is what comes back.
    report = Path(study["report_file"])
    assert report.name == "report.pdf" and report.read_bytes().startswith(b"%PDF-")
    from preread.send.view import study_states

    states = {s.study_uid: s.state for s in study_states(sender.queue)}
    assert states[uids[0]] == "signed" and {states[u] for u in uids[1:]} == {"AI read"}


# --- config and --check ------------------------------------------------------------------------
def test_config_refuses_plain_http_off_loopback_and_names_the_field(tmp_path):
    path = tmp_path / "send.yaml"
    path.write_text("server_url: http://county.example.cn:8000\ntoken_file: t.txt\n")
    with pytest.raises(SendConfigError, match="plain HTTP"):
        load_send_config(path)
    path.write_text("server_url: https://county.example.cn\ntoken_file: t.txt\nbandwidth_kbit_s: -5\n")
    with pytest.raises(SendConfigError, match="bandwidth_kbit_s"):
        load_send_config(path)


def test_check_reports_link_token_and_clock(tmp_path, county, capsys):
    from preread.send.check import run_checks

    cfg = load_send_config(sender_config(tmp_path, county))
    lines = {line.name: line for line in run_checks(cfg)}
    assert all(lines[n].ok for n in ("token file", "link", "clock", "token", "disk", "listener")), lines
    assert "gzip" in lines["compression"].detail
    cfg.token_file.write_text("expired")
    assert not {line.name: line for line in run_checks(cfg)}["token"].ok
    county.proxy.set_mode("down")
    assert not {line.name: line for line in run_checks(cfg, timeout_s=3)}["link"].ok


# --- the service side: compressed bodies -------------------------------------------------------
def test_service_inflates_gzip_bodies_and_refuses_bad_ones(county, shared_data):
    doc = ptbxl_jsons(shared_data / "ecg" / "ptbxl", 0, 1)[0].data
    auth = {"Authorization": f"Bearer {county.token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{county.port}", timeout=60) as http:
        ok = http.post("/api/v1/ecg", content=gzip.compress(doc), headers={**auth, "Content-Encoding": "gzip"})
        assert ok.status_code == 201, ok.text
        assert "gzip" in ok.headers["accept-encoding"]
        again = http.post("/api/v1/ecg", content=doc, headers=auth)  # the same ECG uncompressed: a duplicate
        assert again.status_code == 200 and again.json()["study_uid"] == ok.json()["study_uid"]
        corrupt = http.post("/api/v1/ecg", content=b"\x1f\x8b not gzip", headers={**auth, "Content-Encoding": "gzip"})
        assert corrupt.status_code == 400
        unknown = http.post("/api/v1/ecg", content=doc, headers={**auth, "Content-Encoding": "br"})
        assert unknown.status_code == 415


def test_the_sender_imports_nothing_of_the_service():
    """The clinic PC has no service, models, torch or Ray: importing every sender module must not pull them."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = (
        "import sys, preread.send.app, preread.send.cli, preread.send.check, preread.send.view;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'serving', 'models', 'datasets', 'training',"
        " 'evaluation', 'torch', 'ray', 'fastapi', 'sqlalchemy'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_https_server_certificate_is_verified(tmp_path, county, pki, cinc_dir):
    """Over HTTPS the sender sends only to a server whose certificate its CA file vouches for; with
    the wrong CA `--check` fails on TLS and the study stays queued (retried, never refused)."""
    import uvicorn

    from bench.county import wait_for
    from preread.send.check import run_checks
    from preread.send.upload import Verdict
    from serving.replica.triton.server import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            county.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(pki["server_crt"]),
            ssl_keyfile=str(pki["server_key"]),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 120, 0.05, "uvicorn with TLS")
    try:
        study = cinc_zips(cinc_dir, 1)[0]
        for ca, good in ((pki["ca_crt"], True), (pki["other_crt"], False)):
            config = sender_config(
                tmp_path / ("good" if good else "bad"),
                county,
                server_url=f"https://localhost:{port}",
                ca_file=str(ca),
                listener={"enabled": False},
            )
            cfg = load_send_config(config)
            tls = {line.name: line for line in run_checks(cfg, timeout_s=10)}["tls"]
            assert tls.ok is good, tls
            sender = Sender(cfg, bell=False)
            sender.stop_event.set()  # no backoff wait in handle()
            sender.intake.take(study.data, study.name, "test")
            item = sender.queue.next_due()
            outcome = sender.uploader.send(item, sender.queue.read_bytes(item))
            assert outcome.verdict is (Verdict.SENT if good else Verdict.RETRY), outcome
            if not good:
                assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason or "certificate" in outcome.reason.lower()
            sender.client.close()
            sender.queue.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_command_line_queues_files_shows_states_and_names_bad_config(tmp_path, county, cinc_dir, capsys):
    from preread.cli import build_parser

    config = sender_config(tmp_path, county, listener={"enabled": False})
    study = cinc_zips(cinc_dir, 6)[5]  # a record no other test of this module's county sends (or signs)
    path = tmp_path / study.name
    path.write_bytes(study.data)
    args = build_parser().parse_args(["send", "--config", str(config), "--no-view", "--until-done", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"queued      {path}" in out and "AI read" in out and path.exists()  # the original stays
    status = build_parser().parse_args(["send", "--config", str(config), "--status"])
    assert status.func(status) == 0 and "E07505.zip" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text("server_url: ftp://x\ntoken_file: t\n")
    bad = build_parser().parse_args(["send", "--config", str(tmp_path / "bad.yaml")])
    assert bad.func(bad) == 2 and "server_url" in capsys.readouterr().err


def test_clock_skew_against_the_service_date_header():
    from email.utils import formatdate

    from preread.send.check import clock_check

    def answer(offset_s: float) -> httpx.Response:
        return httpx.Response(200, headers={"Date": formatdate(time.time() + offset_s, usegmt=True)})

    assert clock_check(answer(0)).ok and not clock_check(answer(0)).warning
    assert clock_check(answer(-90)).ok and clock_check(answer(-90)).warning  # the PC is 90 s ahead: warn
    late = clock_check(answer(600))
    assert not late.ok and "behind" in late.detail and "set the clock" in late.detail

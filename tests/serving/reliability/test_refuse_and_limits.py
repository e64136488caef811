"""Refuse rather than half-accept, and the ingest limits, on the real service in-process:

- PostgreSQL stopped (a real outage of a real server): ECG upload and STOW-RS answer 503 with the
  reason, C-STORE 0xA700, /readyz says why; nothing is acknowledged; once it is back the same objects
  are accepted as new (proof nothing was half-recorded).
- The object store full (a real 256 KiB tmpfs; where mounting is not allowed, a store whose mount is
  gone): the same answers, the readiness probe notices, recovery once there is room.
- Per-site rate limits (HTTP 429 + Retry-After; C-STORE 0xA700) that leave other sites alone, and
  size limits per instance (STOW part, C-STORE) and per request (STOW body, ECG body).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.data import get_testdata_file

from bench.county import county_config, wait_for
from tests.conftest import require_peer
from tests.serving.conftest import cinc_zip, free_port
from tests.serving.reliability.helpers import CStoreSender, local_service
from tests.serving.worklist_fixtures import PgCluster, ecg_json

pytestmark = pytest.mark.reliability
BOUNDARY = "refuse-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def stow_body(*parts: bytes) -> bytes:
    body = b"".join(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


def new_ct() -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_cfg(tmp_path, ecg_registry, **updates):
    cfg = county_config(tmp_path, ecg_registry)
    return cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(
                update={
                    "enabled": True,
                    "port": free_port(),
                    "study_stable_seconds": 0.2,
                    "poll_seconds": 0.2,
                    **updates,
                }
            )
        }
    )


def assert_refused_everywhere(client, ecg: bytes, ct: bytes, reason: str) -> None:
    r = client.http.post("/api/v1/ecg", content=ecg, headers={"content-type": "application/zip", **client.auth()})
    assert r.status_code == 503 and reason in json.dumps(r.json()), r.text
    assert r.headers.get("retry-after")
    r = client.http.post(
        "/dicomweb/studies", content=stow_body(ct), headers={"content-type": STOW_TYPE, **client.auth()}
    )
    assert r.status_code == 503, r.text
    if "00081198" in r.json():  # refused part by part (the request itself got that far)
        failure = r.json()["00081198"]["Value"][0]
        assert failure["00081197"]["Value"] == [0xA700] and reason in failure["00000902"]["Value"][0]
    else:  # refused before any part was looked at (e.g. the token check needs the database)
        assert reason in json.dumps(r.json()), r.text
    sender = CStoreSender(client.cfg.dicom.port, [ct])
    try:
        status = sender.send(ct)
        assert int(status.Status) == 0xA700, hex(int(status.Status))
    finally:
        sender.close()
    ready = client.http.get("/readyz")
    assert ready.status_code == 503 and not ready.json()["ready"], ready.text


def assert_accepted_as_new(client, ecg: bytes, ct: bytes) -> None:
    r = client.http.post("/api/v1/ecg", content=ecg, headers={"content-type": "application/zip", **client.auth()})
    assert r.status_code == 201 and r.json()["duplicate"] is False, r.text
    sender = CStoreSender(client.cfg.dicom.port, [ct])
    try:
        assert int(sender.send(ct).Status) == 0
    finally:
        sender.close()
    sop = str(pydicom.dcmread(io.BytesIO(ct), stop_before_pixels=True).SOPInstanceUID)
    assert client.services.db.find_instance(sop) is not None


def test_database_down_is_refused_with_503_and_0xa700_then_recovers(tmp_path, ecg_registry, ecg_reader, cinc_dir):
    cluster = PgCluster()
    if cluster.skip:
        cluster.close()
        require_peer("postgresql", cluster.skip)
    try:
        from tests.serving.worklist_fixtures import fresh_pg_database

        cfg = dicom_cfg(tmp_path, ecg_registry)
        cfg = cfg.model_copy(
            update={"database": cfg.database.model_copy(update={"url": fresh_pg_database(cluster.url)})}
        )
        with local_service(cfg, ecg_reader) as client:
            first = client.http.post(
                "/api/v1/ecg",
                content=json.dumps(ecg_json(seed=1)),
                headers={"content-type": "application/json", **client.auth()},
            )
            assert first.status_code == 201, first.text
            ecg, ct = cinc_zip(cinc_dir, "E07500"), new_ct()

            cluster.stop()
            assert_refused_everywhere(client, ecg, ct, "database unavailable")
            assert "database unreachable" in " ".join(client.http.get("/readyz").json()["problems"])
            # Reading too: a clear 503, not a 500.
            assert client.http.get("/api/v1/worklist", headers=client.auth(role="reader")).status_code == 503

            assert cluster.start() is None
            wait_for(lambda: client.http.get("/readyz").status_code == 200, 120, 0.5, "readiness after the outage")
            assert client.services.db.count() == 1, "something was recorded during the outage"
            assert_accepted_as_new(client, ecg, ct)
    finally:
        cluster.close()


def _fill(folder: Path) -> Path:
    """Fill the filesystem under ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    return filler


def test_storage_full_or_gone_is_refused_then_recovers(tmp_path, ecg_registry, ecg_reader, cinc_dir):
    root = tmp_path / "objects"
    root.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(root)], capture_output=True, text=True
        ).returncode
        == 0
    )
    try:
        cfg = dicom_cfg(tmp_path, ecg_registry)
        cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": root})})
        with local_service(cfg, ecg_reader) as client:
            ecg, ct = cinc_zip(cinc_dir, "E07501"), new_ct()
            before = client.services.db.count()
            if mounted:  # a real full disk: ENOSPC
                filler = _fill(root)
                reason = "storage unavailable"
            else:  # no mount allowed here: the store's mount point is gone (a lost network mount)
                moved = root.with_name("objects-moved")
                root.rename(moved)
                root.write_text("not a directory")
                reason = "storage unavailable"
            assert_refused_everywhere(client, ecg, ct, reason)
            assert "object store not writable" in client.http.get("/readyz").json()["problems"]
            assert client.services.db.count() == before, "a row was recorded for an object that was not stored"

            if mounted:
                filler.unlink()
            else:
                root.unlink()
                moved.rename(root)
            wait_for(lambda: client.http.get("/readyz").status_code == 200, 120, 0.2, "readiness once there is room")
            assert_accepted_as_new(client, ecg, ct)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


def test_rate_limits_per_site(tmp_path, ecg_registry, ecg_reader, monkeypatch):
    from serving.config_access import RateBucket, RateLimitConfig, SiteRateLimits

    # The buckets' clock moves only when the test moves it: on a busy machine three slow uploads
    # took long enough (5 s at 0.2/s) to refill a token, and the fourth was accepted.
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr("serving.ingest.ratelimit.time", SimpleNamespace(monotonic=lambda: clock.now))
    cfg = dicom_cfg(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "rate_limits": RateLimitConfig(
                http=RateBucket(per_second=100, burst=100),
                dicom=RateBucket(per_second=100, burst=100),
                sites={
                    "demo": SiteRateLimits(
                        http=RateBucket(per_second=0.2, burst=3), dicom=RateBucket(per_second=0.05, burst=2)
                    )
                },
            )
        }
    )
    with local_service(cfg, ecg_reader) as client:

        def post(seed: int, sites=("demo",)):
            return client.http.post(
                "/api/v1/ecg",
                content=json.dumps(ecg_json(seed=seed, site=sites[0])),
                headers={"content-type": "application/json", **client.auth(sites=sites)},
            )

        assert [post(i).status_code for i in range(3)] == [201, 201, 201]
        limited = post(3)
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["retry-after"]) >= 1 and "rate limit" in limited.json()["detail"]["reason"]
        assert client.services.db.count() == 3, "a rate-limited upload was stored"
        r = client.http.post(
            "/dicomweb/studies", content=stow_body(new_ct()), headers={"content-type": STOW_TYPE, **client.auth()}
        )
        assert r.status_code == 429, "STOW-RS shares the site's HTTP bucket"
        assert post(4, sites=("other",)).status_code == 201, "another site was throttled by demo's traffic"
        clock.now += int(limited.headers["retry-after"])  # the client waits as told
        assert post(5).status_code == 201, "still refused after Retry-After"

        objects = [new_ct() for _ in range(3)]
        sender = CStoreSender(client.cfg.dicom.port, objects)
        try:
            codes = [int(sender.send(o).Status) for o in objects]
            assert codes[:2] == [0, 0] and codes[2] == 0xA700, [hex(c) for c in codes]
        finally:
            sender.close()


def test_size_limits_per_instance_and_per_request(tmp_path, ecg_registry, ecg_reader, nih_dir):
    from tests.serving.dicom_helpers import wrapped_nih

    cfg = dicom_cfg(tmp_path, ecg_registry, max_instance_bytes=128 * 1024, max_stow_bytes=256 * 1024)
    cfg = cfg.model_copy(update={"limits": cfg.limits.model_copy(update={"max_ecg_bytes": 64 * 1024})})
    with local_service(cfg, ecg_reader) as client:
        big = wrapped_nih(sorted((nih_dir / "Pneumonia").glob("*.png"))[0])  # ~1 MB radiograph
        assert len(big) > 128 * 1024
        r = client.http.post(
            "/dicomweb/studies",
            content=stow_body(new_ct(), new_ct(), new_ct(), new_ct(), new_ct(), new_ct(), new_ct()),
            headers={"content-type": STOW_TYPE, **client.auth()},
        )
        assert r.status_code == 413 and "limit" in r.json()["detail"], "a request over max_stow_bytes"
        huge = b"\0" * (129 * 1024)
        r = client.http.post(
            "/dicomweb/studies", content=stow_body(huge), headers={"content-type": STOW_TYPE, **client.auth()}
        )
        assert r.status_code == 409 and "exceeds the limit" in r.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
        sender = CStoreSender(client.cfg.dicom.port, [big])
        try:
            status = sender.send(big)
            # too large can never succeed: a "do not resend" status, not 0xA700 (out of resources)
            assert int(status.Status) == 0xC000 and "limit" in str(status.ErrorComment)
        finally:
            sender.close()
        r = client.http.post(
            "/api/v1/ecg",
            content=b"{" + b" " * (64 * 1024),
            headers={"content-type": "application/json", **client.auth()},
        )
        assert r.status_code == 413

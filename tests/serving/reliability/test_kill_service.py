"""kill -9 of the whole `preread serve` process tree in the middle of a load, then a restart on the
same state: every acknowledged object is stored and read exactly once.

`preread serve` runs as its own process in a session of its own (bench/service_process.py: temporary
SQLite + object store, free HTTP and DICOM ports, two sites, the session's tiny ECG and CXR models).
Two sites send at once: 12-lead ECGs (CinC 2021 WFDB zips) over HTTP and chest radiographs (NIH
PNGs wrapped as DX) over C-STORE. Right after a radiograph is acknowledged — so at least one
acknowledged study is certainly still waiting for its read — every process of the service's session
gets SIGKILL: the driver, Ray's GCS and raylet, the Serve controller, proxy and replicas. Nothing of
it may be left running; a restart starts a fresh local Ray on the same config; then each
acknowledged study (2xx / C-STORE 0x0000) must have its instances stored and exactly one AI read
(``ai_read`` audit events), and no study in the database — acknowledged or caught in flight — more
than one.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from bench.county import wait_for
from bench.service_process import ServiceProcess, site_list, site_tokens, write_config, zero_loss_report
from serving.store.db import Database
from serving.store.work import ai_read_counts
from tests.serving.dicom_helpers import wrapped_nih
from tests.serving.reliability.helpers import CStoreSender, with_new_uids

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ECG_BEFORE_KILL, CXR_BEFORE_KILL = 6, 3


def _wfdb_zip(cinc_dir: Path, record: str, tag: str) -> bytes:
    """A CinC record as a cart's uploader zips it, made a new object by a comment in its header."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        header = (cinc_dir / f"{record}.hea").read_text().rstrip("\n")
        zf.writestr(f"{record}.hea", f"{header}\n# kill test {tag}\n")
        zf.write(cinc_dir / f"{record}.mat", f"{record}.mat")
    return buffer.getvalue()


class Load:
    """ECG senders over HTTP and one C-STORE sender, each recording what was acknowledged, until
    stopped or the service goes away."""

    def __init__(self, service: ServiceProcess, cfg: dict, cinc_dir: Path, nih_dir: Path):
        self.service, self.cfg = service, cfg
        self.tokens = site_tokens(cfg)
        self.records = sorted(p.stem for p in cinc_dir.glob("*.hea"))[:10]
        self.cinc_dir = cinc_dir
        png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
        self.radiograph = wrapped_nih(png, patient_name="Kill^Test")
        self.ecg_acks: list[str] = []
        self.cxr_acks: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.cxr_acked = threading.Condition()
        self.threads = [threading.Thread(target=self._ecgs, args=(i,), daemon=True) for i in range(2)]
        self.threads.append(threading.Thread(target=self._cxrs, daemon=True))

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _ecgs(self, worker: int) -> None:
        headers = {"Authorization": f"Bearer {self.tokens['site00']}", "content-type": "application/zip"}
        n = 0
        with httpx.Client(base_url=self.service.base, timeout=120) as http:
            while not self.stop.is_set():
                body = _wfdb_zip(self.cinc_dir, self.records[n % len(self.records)], f"{worker}-{n}")
                n += 1
                try:
                    r = http.post("/api/v1/ecg?site=site00", content=body, headers=headers)
                except httpx.HTTPError:  # the service is gone: this one was never acknowledged
                    return
                if r.status_code in (200, 201):
                    self.ecg_acks.append(r.json()["study_uid"])
                else:
                    self.errors.append(f"ECG {r.status_code}: {r.text[:200]}")

    def _cxrs(self) -> None:
        sender = CStoreSender(self.cfg["dicom"]["port"], [self.radiograph], calling="SITE01")
        n = 0
        while not self.stop.is_set():
            n += 1
            data = with_new_uids(self.radiograph, 7_000_000 + n)
            try:
                status = sender.send(data)
            except Exception:  # association aborted by the kill, or refused while it is down
                return
            if status is None or "Status" not in status:
                return  # no response: the service died with this one in hand
            if int(status.Status) == 0:
                with self.cxr_acked:
                    self.cxr_acks.append(f"2.25.{7_000_000 + n}0")  # with_new_uids: study UID = 2.25.{n}0
                    self.cxr_acked.notify_all()
            else:
                self.errors.append(f"C-STORE {int(status.Status):#06x}: {status.get('ErrorComment', '')}")
            time.sleep(0.2)


def test_kill_9_of_the_whole_service_mid_load_loses_nothing(tmp_path, cxr_registry, cinc_dir, nih_dir):
    config, cfg = write_config(
        tmp_path,
        cxr_registry,
        site_list(2),
        overrides={
            # a dead worker's lease is taken over 5 s after it stopped renewing it
            "dicom": {"study_stable_seconds": 0.5, "poll_seconds": 0.2, "lease_seconds": 5},
            "recovery": {"backoff_base_seconds": 1},
            "rate_limits": {"enabled": False},
            "ray_num_cpus": 4,
        },
    )
    service = ServiceProcess(config, tmp_path / "serve.log").start()
    try:
        service.wait_ready(900)
        db = Database(cfg["database"]["url"])
        load = Load(service, cfg, cinc_dir, nih_dir).start()

        def going() -> bool:  # both kinds acknowledged, and the radiograph reads have begun
            return (
                len(load.ecg_acks) >= ECG_BEFORE_KILL
                and len(load.cxr_acks) >= CXR_BEFORE_KILL
                and any(db.get_study(uid).read_at is not None for uid in list(load.cxr_acks))
            )

        wait_for(going, 600, 0.5, "the load to get going")
        with load.cxr_acked:  # kill right after a radiograph is acknowledged: its read is still to come
            seen = len(load.cxr_acks)
            load.cxr_acked.wait_for(lambda: len(load.cxr_acks) > seen, timeout=120)
            killed = service.kill9()
        load.join()
        assert not load.errors, load.errors[:5]
        survivors = service.survivors(wait_s=15)
        assert not survivors, f"processes of the killed service still running: {survivors}"
        assert len(killed) >= 5, f"only {killed} in the service's session: were Ray's processes in it?"

        acked = load.ecg_acks + load.cxr_acks
        waiting = [uid for uid in acked if (s := db.get_study(uid)) is None or s.read_at is None]
        assert load.cxr_acks[-1] in waiting, "the last acknowledged radiograph was read before the kill"
        print(
            f"\nkilled {len(killed)} processes with {len(load.ecg_acks)} ECGs and {len(load.cxr_acks)} "
            f"radiographs acknowledged, {len(waiting)} of them still to be read"
        )

        service.start()  # same config, same state: a fresh local Ray
        service.wait_ready(900)
        report = zero_loss_report(
            cfg["database"]["url"], Path(cfg["storage"]["root"]), acked, drain_s=300, progress=False
        )
        assert report["missing"] == report["without_file"] == 0, report
        assert report["unread"] == report["ai_failed"] == 0, report
        assert report["read_more_than_once"] == 0, report
        assert set(ai_read_counts(db, acked).values()) == {1}
        # Objects caught in flight (stored, never acknowledged) are read too — at most once.
        everything = ai_read_counts(db)
        assert max(everything.values()) == 1, {uid: n for uid, n in everything.items() if n > 1}
    finally:
        service.stop()
    assert not service.survivors(), "processes left after the service was stopped"

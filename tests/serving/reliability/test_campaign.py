"""The outside test's malformed-input campaign against a running `preread serve` (Ray Serve, the SCP, two
sites), and what must hold through it: 0 answers 5xx, 0 tracebacks in the logs, 0 DICOM 0xA7xx for
objects that can never succeed, /healthz and /readyz 200 throughout, and the memory of the ingress and
the ECG model replica back within 15% of where it started (a 200 MiB garbage STOW body, 20 MB ECG
bodies, 1 MB names, every class of issue 17, a cross-site ECG). Run it alone (it starts Ray):
`flock /tmp/preread-heavy.lock python -m pytest tests/serving/reliability/test_campaign.py`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from bench.county import wait_for
from bench.service_process import MARK, ServiceProcess, write_config
from serving.auth.tokens import TokenService, load_secret
from serving.replica.deployment import INGRESS_APP, MODEL_DEPLOYMENTS, model_app_name
from tests.serving.reliability.helpers import CStoreSender
from tests.serving.reliability.holes import Case, corpus, encode, fresh, stow_body, write_case
from tests.serving.worklist_fixtures import ecg_json

pytestmark = [pytest.mark.reliability, pytest.mark.ray, pytest.mark.slow]

SITES = [
    {"id": "demo", "name": "Demo township", "ae_titles": ["DEMOSITE"]},
    {"id": "east", "name": "East township", "ae_titles": ["EASTSITE"]},
]
MEMORY_TOLERANCE = 0.15
GARBAGE_STOW_MIB = 200


def _processes(instance: str) -> dict[str, int]:
    """The service's processes by role: 'ingress' (the preread app's replica) and 'ecg' (the ECG model
    replica), found by the mark every process of this service carries."""
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{MARK}={instance}".encode() not in environ or "ServeReplica" not in cmdline:
            continue
        if f"ServeReplica:{INGRESS_APP}:ingress" in cmdline:
            found["ingress"] = pid
        elif f"ServeReplica:{model_app_name('ecg')}:{MODEL_DEPLOYMENTS['ecg']}" in cmdline:
            found["ecg"] = pid
    return found


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(pid)


class Campaign:
    def __init__(self, service: ServiceProcess, cfg: dict, state: Path):
        self.service, self.cfg, self.state = service, cfg, state
        self.http = httpx.Client(base_url=service.base, timeout=300)
        tokens = TokenService(load_secret(Path(cfg["auth"]["secret_file"])))
        self.headers = {}
        for site in SITES:
            token = tokens.issue("clinic-" + site["id"], "grassroots", [site["id"]])
            self.headers[site["id"]] = {"Authorization": f"Bearer {token}"}
        self.started = time.time()
        self.statuses: list[tuple[str, int]] = []
        self.dimse: list[tuple[str, int]] = []

    def health(self) -> None:
        for path in ("/healthz", "/readyz"):
            r = self.http.get(path)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"

    def ecg(self, name: str, data, content_type: str, site: str = "demo") -> httpx.Response:
        r = self.http.post("/api/v1/ecg", content=data, headers={"content-type": content_type, **self.headers[site]})
        self.statuses.append((name, r.status_code))
        return r

    def stow(self, name: str, data, content_type: str, site: str = "demo") -> httpx.Response:
        r = self.http.post(
            "/dicomweb/studies", content=data, headers={"content-type": content_type, **self.headers[site]}
        )
        self.statuses.append((name, r.status_code))
        return r

    def cstore(self, sender: CStoreSender, case: Case) -> int:
        status = int(sender.send(write_case(self.state, case)).Status)
        self.dimse.append((case.name, status))
        return status


def _garbage(mib: int):
    rng = np.random.default_rng(17)
    for _ in range(mib):
        yield rng.bytes(1024 * 1024)


def _mutations(seed: bytes, n: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(n):
        data = bytearray(seed)
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(132, len(data)))
            data[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", rng.bytes(4)])
        out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def running(tmp_path_factory, cxr_registry):
    state = tmp_path_factory.mktemp("campaign")
    config, cfg = write_config(
        state, cxr_registry, SITES, overrides={"rate_limits": {"enabled": False}, "dicom": {"enabled": True}}
    )
    started = time.time()
    service = ServiceProcess(config, state / "service.log").start()
    try:
        service.wait_ready(600)
        campaign = Campaign(service, cfg, state)
        campaign.started = started
        yield campaign
    finally:
        service.stop()


def _warm_up(c: Campaign, sender: CStoreSender, ct: pydicom.Dataset) -> None:
    for seed in range(8):
        assert c.ecg("warm-ecg", json.dumps(ecg_json(seed=700 + seed)), "application/json").status_code == 201
    for _ in range(3):
        body, ctype = stow_body(encode(fresh(ct)))
        status = c.stow("warm-stow", body, ctype).status_code
        assert status == 200, status
        assert c.cstore(sender, Case("warm-cstore", "cstore", encode(fresh(ct)))) == 0


def test_the_campaign_leaves_no_5xx_no_traceback_no_a7xx_and_memory_near_its_start(running):
    c = running
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    waveform = Path(get_testdata_file("waveform_ecg.dcm")).read_bytes()
    sender = CStoreSender(c.cfg["dicom"]["port"], [encode(ct), waveform], calling="DEMOSITE")
    _warm_up(c, sender, ct)
    pids = wait_for(lambda: (p := _processes(c.service.instance)) and len(p) == 2 and p, 30, 0.5, "the replicas")
    time.sleep(3)
    before = {role: _rss(pid) for role, pid in pids.items()}

    rng = np.random.default_rng(2026)
    for round_ in range(2):  # twice: what one round leaves behind must not grow on the next
        for case in corpus():
            if case.way == "ecg":
                status = c.ecg(case.name, case.data, case.content_type).status_code
                assert status == 422 or (case.pending and status < 500), f"{case.name}: {status}"
            elif case.way == "stow":
                status = c.stow(case.name, *stow_body(case.data)).status_code
                assert status == 409, f"{case.name}: {status}"
            else:
                status = c.cstore(sender, case)
                assert (status & 0xFF00) != 0xA700 and status != 0, f"{case.name}: {status:#06x}"
        c.health()
        # a cross-site ECG: east sends a waveform into demo's study
        demo_study = c.ecg(
            "demo-ecg", encode(fresh(pydicom.dcmread(get_testdata_file("waveform_ecg.dcm")))), "application/dicom"
        ).json()["study_uid"]
        foreign = fresh(pydicom.dcmread(get_testdata_file("waveform_ecg.dcm")))
        foreign.StudyInstanceUID = demo_study
        r = c.ecg("cross-site", encode(foreign), "application/dicom", site="east")
        assert r.status_code == 409 and "demo" not in r.text, r.text
        # large bodies: 200 MiB of garbage as STOW-RS, 19 MB of garbage as an ECG
        r = c.stow(
            "garbage-stow",
            _garbage(GARBAGE_STOW_MIB),
            'multipart/related; type="application/dicom"; boundary=nothing-like-this',
        )
        assert r.status_code == 400, r.text[:300]
        r = c.ecg("garbage-ecg", np.random.default_rng(round_).bytes(19 * 1024 * 1024), "application/dicom")
        assert r.status_code == 422, r.text[:300]
        for data in _mutations(encode(fresh(ct)), 40, rng):
            c.stow("mutated-stow", *stow_body(data))
        c.health()

    fives = [(name, status) for name, status in c.statuses if status >= 500]
    assert not fives, f"5xx answers: {fives}"
    time.sleep(5)
    after = {role: _rss(pid) for role, pid in pids.items()}
    report = {role: f"{before[role] / 2**20:.0f} → {after[role] / 2**20:.0f} MiB" for role in before}
    print(f"\ncampaign: {len(c.statuses)} HTTP, {len(c.dimse)} C-STORE; RSS {report}")
    for role in before:
        assert after[role] <= before[role] * (1 + MEMORY_TOLERANCE), f"{role} RSS did not come back: {report}"
    sender.close()
    logs = {str(c.service.log): c.service.log.read_text(errors="replace")}
    for path in Path("/tmp/ray").glob("session_*/logs/serve/*.log"):  # the replicas' own logs
        if path.stat().st_mtime >= c.started:
            logs[str(path)] = path.read_text(errors="replace")
    traced = [name for name, text in logs.items() if "Traceback" in text]
    assert not traced, f"tracebacks in {traced}"

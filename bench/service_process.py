"""`preread serve` as a process of its own, on temporary state — shared by the load test
(bench/load_test.py) and the kill -9 test of the whole service (tests/serving/reliability/
test_kill_service.py): a config (SQLite, local files, free HTTP and DICOM ports, the given sites and
registry), the process in a session of its own (so it, its Ray and Ray's workers can be signalled
together), readiness, a graceful stop or a kill -9 of the whole session, a check that nothing of a
killed service is left running, and the zero-loss check of what it acknowledged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.measure import percentile
from models.registry import open_registry
from serving.auth.tokens import TokenService, load_secret
from serving.replica.triton.server import free_port
from serving.store.db import Database, as_utc
from serving.store.work import ai_read_counts

REPO = Path(__file__).resolve().parents[1]
# Every process of one service (the driver, Ray's GCS, raylet, workers, replicas) inherits this
# variable: how the processes of a killed service are found, even one that left its session.
MARK = "PREREAD_SERVICE_INSTANCE"


class ProcessExited(RuntimeError):
    """The child process ended while we waited for it to answer."""


def wait_for_http(
    url: str, process: subprocess.Popen, timeout: float, interval: float = 0.5, request_timeout: float = 2.0
) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` seconds pass (False); raises
    ProcessExited as soon as ``process`` has ended. For servers we start ourselves (preread serve,
    an MLflow tracking server in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessExited(f"exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=request_timeout).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False


def ensure_registry(registry: str | Path) -> None:
    """Tiny ECG and CXR models (the project's training code, tests/data configs) if none is there.
    ``registry``: an MLflow URI or a folder (models.registry.open_registry)."""
    reg = open_registry(str(registry))
    for task in ("ecg", "cxr"):
        if reg.is_empty(task):
            print(f"[service] training a tiny {task} model into {registry} ...", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "preread.cli",
                    "train",
                    task,
                    "--config",
                    str(REPO / "tests" / "data" / f"{task}-tiny.yaml"),
                    "--registry",
                    str(registry),
                ],
                check=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )


def site_list(count: int) -> list[dict[str, Any]]:
    """``count`` sending sites site00, site01 … with AE titles SITE00, SITE01 …"""
    return [{"id": f"site{i:02d}", "name": f"Site {i}", "ae_titles": [f"SITE{i:02d}"]} for i in range(count)]


def write_config(
    state: Path, registry: str | Path, sites: list[dict[str, Any]], overrides: dict[str, dict[str, Any]] | None = None
) -> tuple[Path, dict[str, Any]]:
    """configs/serving.yaml with every piece of state under ``state``, free ports and ``sites``;
    ``overrides`` update its sections (e.g. ``{"dicom": {"lease_seconds": 5}}``)."""
    cfg = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text())
    cfg["http"]["port"] = free_port()
    cfg["dicom"].update(port=free_port())
    cfg["sites"] = sites
    cfg["storage"] = {"root": str(state / "objects")}
    cfg["database"] = {"url": f"sqlite:///{state / 'preread.db'}"}
    cfg["registry"] = {"uri": str(registry)}
    cfg["auth"] = {"secret_file": str(state / "secret.key"), "users": []}
    cfg["deid"] = {"key_store": str(state / "reid" / "keys.db")}
    cfg["config_dir"] = str(REPO / "configs")
    for section, values in (overrides or {}).items():
        if isinstance(cfg.get(section), dict) and isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path = state / "serving.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def site_tokens(cfg: dict[str, Any], role: str = "grassroots") -> dict[str, str]:
    """One API token per configured site (signed with the service's key; creates it if new)."""
    tokens = TokenService(load_secret(Path(cfg["auth"]["secret_file"])))
    return {s["id"]: tokens.issue(f"load-{s['id']}", role, [s["id"]]) for s in cfg["sites"]}


class ServiceProcess:
    """One `preread serve --config CONFIG` in a session of its own (its PID is the session id)."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log = config, log
        self.cfg = yaml.safe_load(config.read_text())
        self.base = f"http://{self.cfg['http']['host']}:{self.cfg['http']['port']}"
        self.proc: subprocess.Popen | None = None
        self.instance = ""

    def start(self) -> ServiceProcess:
        self.instance = uuid.uuid4().hex
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", MARK: self.instance}
        env.pop("RAY_ADDRESS", None)  # `preread serve` starts its own local Ray
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "preread.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.config.parent,
            )
        return self

    def wait_ready(self, timeout: float = 600) -> None:
        try:
            ready = wait_for_http(f"{self.base}/readyz", self.proc, timeout, interval=2.0, request_timeout=5.0)
        except ProcessExited:
            raise RuntimeError(
                f"preread serve exited with {self.proc.returncode}; log: {self.log}\n" + self.log.read_text()[-3000:]
            ) from None
        if not ready:
            raise TimeoutError(f"preread serve not ready after {timeout:.0f} s; log: {self.log}")

    def stop(self, timeout: float = 60) -> None:
        """SIGINT (preread serve shuts Serve and Ray down), then kill -9 of whatever is left."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill9()
        for pid in self.survivors(wait_s=10):  # what left the session but still carries our mark
            _kill(pid)

    def kill9(self) -> list[int]:
        """kill -9 of every process in the service's session (the driver, Ray and its workers, by
        process group and by session: a process that started a group of its own is not spared).
        Returns the PIDs signalled."""
        if self.proc is None:
            return []
        killed = [pid for pid in _pids() if _session(pid) == self.proc.pid]
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in killed:
            _kill(pid)
        self.proc.wait(timeout=30)
        return killed

    def survivors(self, wait_s: float = 0) -> list[int]:
        """PIDs still running (not zombies) that carry this service's mark, after up to ``wait_s``
        seconds for them to go."""
        deadline = time.time() + wait_s
        while True:
            alive = [pid for pid in _pids() if _alive(pid) and _environ(pid).get(MARK) == self.instance]
            if not alive or time.time() >= deadline:
                return alive
            time.sleep(0.5)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # fields after "(command)": state, ppid, pgrp, session …
    except OSError:
        return []


def _session(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[3]) if fields else None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            items = fh.read().split(b"\0")
    except OSError:
        return {}
    return dict(item.decode(errors="replace").split("=", 1) for item in items if b"=" in item)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def zero_loss_report(
    db_url: str, store_root: Path, study_uids: Iterable[str], drain_s: float, progress: bool = True
) -> dict[str, Any]:
    """Waits up to ``drain_s`` for every study to have its AI read, then checks in the database that
    each is stored (row + instance files) and was read exactly once (``ai_read`` audit events);
    counts, examples, and the arrival → AI read percentiles."""
    db = Database(db_url)
    studies = sorted(set(study_uids))
    deadline = time.time() + drain_s
    while True:
        pending = [uid for uid in studies if (s := db.get_study(uid)) is None or s.read_at is None]
        if not pending or time.time() > deadline:
            break
        if progress:
            print(f"[service] waiting for {len(pending)} AI reads ...", flush=True)
        time.sleep(5)
    missing, no_file, unread, failed, to_read = [], [], [], [], []
    for uid in studies:
        study = db.get_study(uid)
        if study is None or not study.instances:
            missing.append(uid)
            continue
        if not all((store_root / i.storage_key).is_file() for i in study.instances):
            no_file.append(uid)
        if study.read_at is None:
            (failed if study.status == "ai_failed" else unread).append(uid)
        else:
            to_read.append((as_utc(study.read_at) - as_utc(study.arrived_at)).total_seconds())
    counts = ai_read_counts(db, studies)
    read_twice = [uid for uid, n in counts.items() if n > 1]
    db.engine.dispose()
    return {
        "acknowledged_studies": len(studies),
        "missing": len(missing),
        "without_file": len(no_file),
        "unread": len(unread),
        "ai_failed": len(failed),
        "read_more_than_once": len(read_twice),
        "time_to_read_s": percentiles(to_read),
        "examples": {
            "missing": missing[:5],
            "without_file": no_file[:5],
            "unread": unread[:5],
            "ai_failed": failed[:5],
            "read_more_than_once": read_twice[:5],
        },
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": round(percentile(values, q), 3) if values else None for q in (50, 95, 99)}

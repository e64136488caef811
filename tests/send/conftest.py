"""The county service on loopback for the sender's tests: the real API, ECG workflow, DICOM ingest,
dispatcher and store in-process (serving.local), served by uvicorn on a real port, behind a fault
proxy. The default suite reads with stand-in readers (the models are not what these tests check);
the slow test reads ECGs with the tiny model our own training code builds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from bench.link_proxy import FaultProxy
from models.read import PreRead
from serving.auth.tokens import TokenService, load_secret
from serving.replica.triton.server import free_port
from tests.conftest import REPO_ROOT
from tests.serving.conftest import ecg_registry, make_config  # noqa: F401 - the fixture, for the slow test
from tests.serving.dicom_helpers import FakeCxrReader, UvicornThread, wait_for
from tests.serving.reliability.test_security import pki  # noqa: F401 - the test PKI fixture, for the HTTPS test


class FakeEcgReader:
    """The EcgPreReader contract without a network: a read whose quality and level follow a digest
    of the signals (1 in 7 "repeat the ECG", 1 in 7 critical), so notifications can be checked."""

    model: ClassVar[dict[str, Any]] = {"name": "ecg", "version": "0-test", "architecture": "fake", "demo": True}

    def read_batch(self, items) -> list[PreRead]:
        return [self.read(np.asarray(item.signals, dtype=np.float32)) for item in items]

    def read(self, signals: np.ndarray) -> PreRead:
        bucket = int(hashlib.sha256(signals.tobytes()).hexdigest(), 16) % 7
        acceptable = bucket != 0
        level = "critical" if bucket == 1 else "routine"
        return PreRead.model_validate(
            {
                "modality": "ECG",
                "preliminary": True,
                "model": dict(self.model),
                "disclaimer": "test stand-in, not a model",
                "findings": [
                    {
                        "code": "MI",
                        "name": "Myocardial infarction",
                        "probability": 0.9 if level == "critical" else 0.1,
                        "threshold": 0.5,
                        "positive": level == "critical",
                    }
                ],
                "measurements": {"heart_rate_bpm": 70.0},
                "quality": {
                    "acceptable": acceptable,
                    "reasons": []
                    if acceptable
                    else [{"code": "ecg_noisy_lead", "text": "leads too noisy", "leads": ["V1"]}],
                    "action": None if acceptable else "repeat the ECG",
                },
                "triage": {"level": level, "score": 0.9 if level == "critical" else 0.2, "reasons": ["fake"]},
            }
        )


@dataclass
class County:
    cfg: Any
    services: Any
    proxy: FaultProxy
    port: int
    token: str
    reader_token: str
    app: Any = None


def county_service(state: Path, registry: str | None, ecg_reader) -> tuple:
    """(County, closer): the in-process service on a free port, behind a FaultProxy."""
    from serving.api.app import build_api
    from serving.reading.runtime import start_local_dicom
    from serving.services import build_services

    cfg = make_config(state, registry or state / "no-registry")
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(update={"enabled": False, "study_stable_seconds": 0.3, "poll_seconds": 0.1})
        }
    )

    async def read_ecg(item):  # as serving.local does, without the KServe route (it needs a registry)
        return (await asyncio.to_thread(ecg_reader.read_batch, [item]))[0]

    services = build_services(cfg, read_ecg)
    services.models_ready["ecg"] = True
    app = build_api(lambda: services)
    runtime = start_local_dicom(services, FakeCxrReader())
    server = UvicornThread(app, cfg.http.port).__enter__()
    proxy = FaultProxy(cfg.http.port, seed=7)
    tokens = TokenService(load_secret(cfg.auth.secret_file))
    county = County(
        cfg,
        services,
        proxy,
        cfg.http.port,
        tokens.issue("clinic-a", "grassroots", ["demo"]),
        tokens.issue("county-doctor", "reader", ["demo"]),
        app,
    )

    def close() -> None:
        proxy.close()
        server.__exit__(None, None, None)
        runtime.stop()

    return county, close


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    """One county per test module (tests that count what the county holds take ``fresh_county``)."""
    county, close = county_service(tmp_path_factory.mktemp("county"), None, FakeEcgReader())
    yield county
    close()


@pytest.fixture(autouse=True)
def _link_up(request):
    yield
    if "county" in request.fixturenames:
        request.getfixturevalue("county").proxy.set_mode("up")


@pytest.fixture
def fresh_county(tmp_path):
    county, close = county_service(tmp_path / "county", None, FakeEcgReader())
    yield county
    close()


def sender_config(tmp_path: Path, county: County, **overrides: Any) -> Path:
    """A sender config on tmp_path: the county through its proxy, short timeouts and backoff."""
    state = tmp_path / "clinic"
    state.mkdir(parents=True, exist_ok=True)
    (state / "token.txt").write_text(county.token)
    cfg = {
        "server_url": county.proxy.url,
        "token_file": "token.txt",
        "site": "demo",
        "state_dir": "state",
        "watch_folder": "inbox",
        "watch_poll_s": 0.2,
        "listener": {"enabled": True, "ae_title": "CLINICSEND", "host": "127.0.0.1", "port": free_port()},
        "disk_reserve_mb": 0,
        "retry": {"initial_s": 0.2, "max_s": 1.5, "request_timeout_s": 3.0},
        "results": {"poll_s": 0.5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = state / "send.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class SenderProcess:
    """`python -m preread.send --config ...` as its own process, to kill -9."""

    def __init__(self, config: Path):
        self.config, self.proc = config, None
        self.log = config.parent / "sender-stdout.log"

    def start(self) -> SenderProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "preread.send", "--config", str(self.config), "--no-view"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.config.parent,
            )
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


def drop_in(folder: Path, name: str, data: bytes) -> None:
    """As a modality's export would: written under a temporary name, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.part"
    tmp.write_bytes(data)
    tmp.rename(folder / name)


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    return wait_for(check, timeout, interval, what)


def seconds() -> float:
    return time.monotonic()

"""Fixtures for the sender's tests: the county service on loopback (bench/county.py: the real API,
ECG workflow, DICOM ingest, dispatcher and store in-process, served by uvicorn on a real port, behind
a fault proxy) with stand-in readers (the models are not what these tests check; the slow test reads
ECGs with the tiny model our own training code builds), and the sender as a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.county import county_service, wait_for
from bench.standin_readers import StandInEcgReader
from tests.conftest import REPO_ROOT
from tests.serving.conftest import ecg_registry  # noqa: F401 - the fixture, for the slow test
from tests.serving.reliability.test_security import pki  # noqa: F401 - the test PKI fixture, for the HTTPS test


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    """One county per test module (tests that count what the county holds take ``fresh_county``)."""
    county, close = county_service(tmp_path_factory.mktemp("county"), None, StandInEcgReader())
    yield county
    close()


@pytest.fixture(autouse=True)
def _link_up(request):
    yield
    if "county" in request.fixturenames:
        request.getfixturevalue("county").proxy.set_mode("up")


@pytest.fixture
def fresh_county(tmp_path):
    county, close = county_service(tmp_path / "county", None, StandInEcgReader())
    yield county
    close()


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

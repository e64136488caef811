"""Fixtures for the reading worklist tests: a throw-away PostgreSQL cluster (Debian's binaries on a
loopback port), a database URL parametrized over SQLite and PostgreSQL, and an in-process client on it.

Import into a test module with ``from tests.serving.worklist_fixtures import *  # noqa``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from bench.county import county_config
from serving.store.schema import Correction, Study
from tests.conftest import PG_BIN, require_peer
from tests.serving.conftest import Client, free_port

PASSWORD = "correct-horse-battery"


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        require_peer("postgresql", "running as root and runuser is missing: initdb refuses root")
    return [runuser, "-u", "postgres", "--", *cmd]


class PgCluster:
    """A throw-away PostgreSQL 15 cluster in a temporary folder on a loopback port; ``stop`` and
    ``start`` again (the database-outage tests), ``close`` removes it. ``skip`` says why none can run."""

    def __init__(self):
        self.skip = None
        if not (PG_BIN / "initdb").exists():
            self.skip = f"PostgreSQL binaries not found under {PG_BIN}"
            return
        try:
            import psycopg  # noqa: F401
        except ImportError:
            self.skip = "psycopg is not installed"
            return
        self.folder = Path(tempfile.mkdtemp(prefix="preread-pg-"))
        self.data = self.folder / "data"
        if os.geteuid() == 0:
            try:
                pg_user = pwd.getpwnam("postgres")
            except KeyError:
                self.skip = "running as root and there is no 'postgres' user to run initdb as"
                return
            os.chown(self.folder, pg_user.pw_uid, pg_user.pw_gid)
        self.port = free_port()
        init = subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            self.skip = f"initdb failed: {init.stderr.strip()[-300:]}"
            return
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        problem = self.start()
        if problem:
            self.skip = problem

    def start(self) -> str | None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        started = subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.folder / "log"),
                    "-w",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            return f"PostgreSQL did not start: {started.stderr.strip()[-200:]} {log[-300:]}"
        return None

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]), capture_output=True
        )

    def close(self) -> None:
        if getattr(self, "data", None) is not None and self.data.exists():
            self.stop("immediate")
        if getattr(self, "folder", None) is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL 15 cluster in a temporary folder for the test session; yields a base URL."""
    cluster = PgCluster()
    if cluster.skip:
        cluster.close()
        require_peer("postgresql", cluster.skip)
    try:
        yield cluster.url
    finally:
        cluster.close()


def fresh_pg_database(base_url: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'preread.db'}"
    return fresh_pg_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def reading_client(tmp_path, db_url, ecg_registry, ecg_reader):
    """The real API in-process on SQLite or PostgreSQL, with users for every role."""
    from fastapi.testclient import TestClient

    from serving.auth.users import create_user
    from serving.local import create_local_app

    cfg = county_config(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "database": cfg.database.model_copy(update={"url": db_url}),
            "auth": cfg.auth.model_copy(update={"users": []}),
        }
    )
    app, services = create_local_app(cfg, reader=ecg_reader)
    for name, role, sites in USERS:
        create_user(services.db, name, PASSWORD, role, sites)
    with TestClient(app) as http:
        client = Client(http, cfg)
        client.services = services
        client.dialect = services.db.engine.dialect.name
        yield client
    services.db.engine.dispose()


USERS = [
    ("clinic-demo", "grassroots", ["demo"]),
    ("clinic-other", "grassroots", ["other"]),
    ("reader-demo", "reader", ["demo"]),
    ("reader-demo-2", "reader", ["demo"]),
    ("reader-other", "reader", ["other"]),
    ("datasci", "datasci", ["*"]),
    ("admin", "admin", ["*"]),
]


def login(client, username: str, password: str = PASSWORD) -> dict:
    r = client.http.post("/api/v1/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def ecg_json(bpm: float = 75.0, seconds: float = 10.0, rate: int = 500, site: str = "demo", seed: int = 0) -> dict:
    """A synthetic 12-lead ECG as JSON: spike-train beats at ``bpm`` (180 bpm trips the heart-rate rule)."""
    from datasets.ecg.record import STANDARD_LEADS

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    period = 60.0 / bpm
    beat = 1.0 * np.exp(-(((t % period) - 0.1) ** 2) / 0.00008) + 0.2 * np.exp(-(((t % period) - 0.3) ** 2) / 0.002)
    signals = {
        lead: (beat * (1 + i / 12) + rng.normal(0, 0.01, t.size)).round(4).tolist()
        for i, lead in enumerate(STANDARD_LEADS)
    }
    return {
        "sampling_rate": rate,
        "leads": signals,
        "site": site,
        "patient": {"id": f"5301021990010{seed:05d}", "name": "Li^Si", "sex": "F", "age": "67"},
    }


def post_ecg(client, body: dict, headers: dict) -> dict:
    r = client.http.post(
        "/api/v1/ecg", content=json.dumps(body), headers={"content-type": "application/json", **headers}
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def signed_at_one_instant(db) -> None:
    """Put every signature and arrival of ``db`` at the earliest one's instant. Monitoring groups by
    week of signed_at / arrived_at, and a test that signs its reads at "now" and ran across a week
    boundary (Sunday → Monday, 00:00 UTC) would see them split over two periods."""
    with db.session() as session:
        session.execute(update(Correction).values(signed_at=session.scalar(select(func.min(Correction.signed_at)))))
        session.execute(update(Study).values(arrived_at=session.scalar(select(func.min(Study.arrived_at)))))

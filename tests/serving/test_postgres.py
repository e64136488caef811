"""The store and the ECG API suites again, on PostgreSQL 15 (Debian's binaries, a throw-away cluster on a
loopback port). The reading-worklist tests (tests/serving/test_worklist_reading.py) are parametrized over
SQLite and PostgreSQL themselves; this module re-runs the suites written against SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from bench.county import county_config
from serving.store.db import Database
from tests.serving import test_ecg_api, test_worklist_store
from tests.serving.conftest import Client
from tests.serving.worklist_fixtures import fresh_pg_database, postgres_server  # noqa: F401 (fixture)

# Collected here with this module's `db` and `local_client` fixtures, i.e. on PostgreSQL.
for _module in (test_worklist_store, test_ecg_api):
    for _name in dir(_module):
        if _name.startswith("test_"):
            globals()[f"{_name}"] = getattr(_module, _name)


@pytest.fixture
def db(postgres_server) -> Database:  # noqa: F811
    database = Database(fresh_pg_database(postgres_server))
    database.migrate()
    yield database
    database.engine.dispose()


@pytest.fixture
def local_client(tmp_path, postgres_server, ecg_registry, ecg_reader):  # noqa: F811
    from fastapi.testclient import TestClient

    from serving.local import create_local_app

    cfg = county_config(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={"database": cfg.database.model_copy(update={"url": fresh_pg_database(postgres_server)})}
    )
    app, services = create_local_app(cfg, reader=ecg_reader)
    with TestClient(app) as http:
        client = Client(http, cfg)
        client.services = services
        yield client
    services.db.engine.dispose()


def test_migrations_are_idempotent_and_complete_on_postgres(db):
    db.migrate()  # again: nothing to do
    tables = set(inspect(db.engine).get_table_names())
    assert {"studies", "instances", "users", "revoked_tokens", "corrections", "audit_log", "alembic_version"} <= tables
    assert db.engine.dialect.name == "postgresql" and db.ping()

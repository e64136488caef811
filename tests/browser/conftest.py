"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's Chromium
through Playwright (no browser downloads). Skipped with the reason when Chromium or Playwright is missing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.serving.conftest import ecg_reader, ecg_registry, free_port, make_config  # noqa: F401 (fixtures)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def live_server(tmp_path, ecg_registry, ecg_reader):  # noqa: F811
    """The in-process app (real model, SQLite) behind uvicorn on a free port."""
    import uvicorn

    from serving.local import create_local_app

    port = free_port()
    cfg = make_config(tmp_path, ecg_registry, port=port)
    cfg = cfg.model_copy(update={
        "auth": cfg.auth.model_copy(update={"users": []}),
        "worklist": cfg.worklist.model_copy(update={"poll_seconds": 1.0}),
    })
    app, services = create_local_app(cfg, reader=ecg_reader)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    server.base_url = f"http://127.0.0.1:{port}"
    server.services = services
    server.cfg = cfg
    yield server
    server.should_exit = True
    thread.join(timeout=10)

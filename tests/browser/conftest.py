"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's Chromium
through Playwright (no browser downloads). Skipped with the reason when Chromium or Playwright is missing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.serving.conftest import cxr_registry, ecg_reader, ecg_registry, free_port, make_config  # noqa: F401 (fixtures)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def cxr_reader(cxr_registry):  # noqa: F811
    """The real tiny CXR model (training.cxr, tests/data/cxr-tiny.yaml) with Grad-CAM. It is useless as a
    classifier, so its pneumonia threshold is set to 0: the read then always calls pneumonia positive and
    the dispatcher stores a heatmap Secondary Capture for the viewer to overlay."""
    if cxr_registry is None:
        pytest.skip("no tiny CXR model (training.cxr unavailable or failed: see the warnings)")
    from models.cxr.pipeline import CxrPreReader

    return CxrPreReader.from_registry(cxr_registry, "cxr@champion", REPO_ROOT / "configs" / "triage" / "cxr.yaml",
                                      cam_device="cpu", threshold_overrides={"PNEUMONIA": 0.0})


@pytest.fixture
def live_server(tmp_path, ecg_registry, ecg_reader, cxr_reader):  # noqa: F811
    """The in-process app (real ECG and CXR models, SQLite) behind uvicorn on a free port, with the DICOM
    path's dispatcher running (STOW-RS in, routing, CXR read, SR + heatmap SC stored)."""
    import uvicorn

    from serving.reading.runtime import start_local_dicom
    from serving.local import create_local_app

    port = free_port()
    cfg = make_config(tmp_path, ecg_registry, port=port)
    cfg = cfg.model_copy(update={
        "auth": cfg.auth.model_copy(update={"users": []}),
        "worklist": cfg.worklist.model_copy(update={"poll_seconds": 1.0}),
        # the SCP stays off (STOW-RS is the way in here); the dispatcher polls fast
        "dicom": cfg.dicom.model_copy(update={"enabled": False, "study_stable_seconds": 0.3, "poll_seconds": 0.1}),
    })
    app, services = create_local_app(cfg, reader=ecg_reader)
    runtime = start_local_dicom(services, cxr_reader)
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
    server.runtime = runtime
    yield server
    server.should_exit = True
    thread.join(timeout=10)
    runtime.stop()


def open_page(chromium, base_url: str, errors: list[str], height: int = 1000):
    """A new page on the app's start page; uncaught page errors are collected into ``errors``."""
    page = chromium.new_page(viewport={"width": 1400, "height": height})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    return page


def sign_in(page, user: str, password: str) -> None:
    """Fill in and submit the login form (the page must show it)."""
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-btn")

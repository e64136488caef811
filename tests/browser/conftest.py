"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's Chromium
through Playwright (no browser downloads). Without Chromium they skip (require_peer), and fail under CI."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.county import county_config
from tests.conftest import REPO_ROOT
from tests.serving.conftest import cxr_registry, ecg_reader, ecg_registry, free_port  # noqa: F401 (fixtures)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# A site operating point set for the browser tests (a site may tune its thresholds: configs/triage):
# at 0 the tiny model's PNEUMONIA output is positive, which is what the viewer needs to show a heatmap.
CXR_TEST_OPERATING_POINT = {"PNEUMONIA": 0.0}


@pytest.fixture(scope="session")
def cxr_reader(cxr_registry):  # noqa: F811
    """The real tiny CXR model (training.cxr, tests/data/cxr-tiny.yaml) with Grad-CAM, at a test operating
    point (CXR_TEST_OPERATING_POINT) so that the read has a positive finding and the dispatcher stores a
    heatmap Secondary Capture for the viewer to overlay. The browser tests check the viewer and the
    read's coherence with its own thresholds, never that the model found pneumonia."""
    from models.cxr.pipeline import CxrPreReader

    return CxrPreReader.from_registry(
        cxr_registry,
        "cxr@champion",
        REPO_ROOT / "configs" / "triage" / "cxr.yaml",
        cam_device="cpu",
        threshold_overrides=CXR_TEST_OPERATING_POINT,
    )


@pytest.fixture
def live_server(tmp_path, ecg_registry, ecg_reader, cxr_reader):  # noqa: F811
    """The in-process app (real ECG and CXR models, SQLite) behind uvicorn on a free port, with the DICOM
    path's dispatcher running (STOW-RS in, routing, CXR read, SR + heatmap SC stored)."""
    import uvicorn

    from serving.local import create_local_app
    from serving.reading.runtime import start_local_dicom

    port = free_port()
    cfg = county_config(tmp_path, ecg_registry, port=port)
    cfg = cfg.model_copy(
        update={
            "auth": cfg.auth.model_copy(update={"users": []}),
            "worklist": cfg.worklist.model_copy(update={"poll_seconds": 1.0}),
            # the SCP stays off (STOW-RS is the way in here); the dispatcher polls fast
            "dicom": cfg.dicom.model_copy(update={"enabled": False, "study_stable_seconds": 0.3, "poll_seconds": 0.1}),
        }
    )
    app, services = create_local_app(cfg, reader=ecg_reader)
    runtime = start_local_dicom(services, cxr_reader)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 120  # uvicorn in a thread of the busy test process
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


def open_page(chromium, base_url: str, errors: list[str], height: int = 1000, locale: str | None = "en"):
    """A new page on the app's start page; uncaught page errors are collected into ``errors``. ``locale``
    is the user's choice on the page (kept in localStorage); None leaves the deployment's default."""
    page = chromium.new_page(viewport={"width": 1400, "height": height})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if locale:
        page.add_init_script(f"localStorage.setItem('preread.locale', {locale!r})")
    page.goto(base_url + "/")
    return page


def sign_in(page, user: str, password: str) -> None:
    """Fill in and submit the login form (the page must show it)."""
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-btn")

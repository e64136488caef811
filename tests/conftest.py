"""Session-wide fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real samples that ship beside the repository (../shared/data), or $PREREAD_SHARED_DATA."""
    env = os.environ.get("PREREAD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"real sample data not found at {path} (set PREREAD_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def cinc_dir(shared_data: Path) -> Path:
    return shared_data / "ecg" / "cinc2021"


@pytest.fixture(scope="session")
def nih_dir(shared_data: Path) -> Path:
    return shared_data / "cxr" / "nih"


CHROMIUM = os.environ.get("PREREAD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser), one per test
    module. Module scope on purpose: Playwright's sync API runs its event loop in the main thread
    while open, which breaks any later asyncio.run() or a second sync_playwright() in the session."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()

"""Session-wide fixtures. Area-specific fixtures live in tests/<area>/conftest.py.

Peers (Triton, dcmtk, Orthanc, Chromium, PostgreSQL) are required through ``require_peer``: on a
developer's machine a missing peer skips the test with the reason; when ``CI`` is set every skip is a
failure (a missing peer or a fixture that could not be made is a broken build, not a pass). A test that
may legitimately skip under CI says so with ``@pytest.mark.ci_may_skip(reason)``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/test_suite_rules.py runs small suites under CI

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("PREREAD_PG_BIN", "/usr/lib/postgresql/15/bin"))
CHROMIUM = os.environ.get("PREREAD_CHROMIUM", "/usr/bin/chromium")


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def _missing_program(*names: str) -> str | None:
    absent = [n for n in names if not (shutil.which(n) or Path(n).is_file())]
    return f"{', '.join(absent)} not installed" if absent else None


def _missing_chromium() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (set PREREAD_CHROMIUM)"
    return None


def _missing_triton() -> str | None:
    from serving.replica.triton.server import TritonNotInstalled, find_tritonserver

    try:
        find_tritonserver()
    except TritonNotInstalled as exc:
        return str(exc)
    return None


# peer name → a probe answering None when the peer is here, else why it is not
PEERS: dict[str, Callable[[], str | None]] = {
    "dcmtk": lambda: _missing_program("storescu", "echoscu", "dcmdump"),
    "orthanc": lambda: _missing_program("Orthanc") and _missing_program("/usr/sbin/Orthanc"),
    "chromium": _missing_chromium,
    "postgresql": lambda: None if (PG_BIN / "initdb").exists() else f"PostgreSQL binaries not found under {PG_BIN}",
    "triton": _missing_triton,
}


def peer_missing(name: str) -> str | None:
    """Why the peer ``name`` is not here, or None when it is."""
    return PEERS[name]()


def require_peer(name: str, reason: str | None = None) -> None:
    """Stop this test because the peer ``name`` is missing: ``reason`` when the caller already knows
    (a fixture that tried to start it), else the peer's probe decides. Skips on a developer's machine,
    fails under CI."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; one of {', '.join(PEERS)}")
    reason = reason or peer_missing(name)
    if reason is None:
        return
    message = f"peer {name} missing: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing peer is a failure)", pytrace=False)
    pytest.skip(message)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "peer(name): the test needs the named peer (see tests/conftest.py PEERS)")
    config.addinivalue_line("markers", "ci_may_skip(reason): this test's skip is not a failure under CI")


def pytest_runtest_setup(item) -> None:
    for marker in item.iter_markers("peer"):
        for name in marker.args:
            require_peer(name)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skipped test (setup or call: a skipif, a pytest.skip in a fixture) is a failure."""
    outcome = yield
    report = outcome.get_result()
    if (
        in_ci()
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("ci_may_skip") is None
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which counts as a failure: {_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under CI, a module that skips itself at collection (importorskip, allow_module_level) fails."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"collection skipped under CI, which counts as a failure: {_skip_reason(report)}"


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


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser), one per test
    module. Module scope on purpose: Playwright's sync API runs its event loop in the main thread
    while open, which breaks any later asyncio.run() or a second sync_playwright() in the session."""
    from playwright.sync_api import sync_playwright  # a hard test dependency: its absence is an error

    require_peer("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()

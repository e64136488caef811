"""Session-wide fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
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

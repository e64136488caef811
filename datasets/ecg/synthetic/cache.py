"""Where the synthetic ECG generator keeps what it makes once: the cache directory, the version that keys
the caches, and an atomic npz writer (readers never see half a file)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

# Bump whenever generated signals change: it keys the on-disk caches.
GENERATOR_VERSION = 1


def default_cache_dir() -> Path:
    """``$PREREAD_CACHE``, else ``~/.cache/preread``."""
    return Path(os.environ.get("PREREAD_CACHE", Path.home() / ".cache" / "preread"))


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an npz next to ``path`` and rename it in place: readers never see half a file,
    and concurrent writers (parallel test runs) just race to the same content."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache location must not stop generation
        warnings.warn(f"could not write cache {path}: {exc}", stacklevel=2)

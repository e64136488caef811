"""Durable object storage for received originals and our result objects.

Content-addressed (SHA-256) files under a root folder. A write is durable when ``put`` returns:
data written to a temporary file, fsync'd, renamed into place, and the folder fsync'd — so an
acknowledged study survives a crash or power loss. The same interface can sit on shared object
storage in a cluster.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class StorageUnavailable(RuntimeError):
    """The store cannot take writes (disk full, read-only, missing mount): refuse, don't half-accept."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size_bytes: int


class ObjectStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key escapes the store: {key!r}")
        return path

    def put(self, data: bytes, suffix: str = ".bin") -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        key = f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
        path = self._path(key)
        if path.exists() and path.stat().st_size == len(data):
            return StoredObject(key, digest, len(data))  # same bytes already stored durably
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageUnavailable(f"object store at {self.root} cannot take writes: {exc}") from exc
        return StoredObject(key, digest, len(data))

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def path(self, key: str) -> Path:
        return self._path(key)

    def writable(self) -> bool:
        """Can the store take a write right now? A real probe (a small file written, fsync'd and
        removed): a full disk, a read-only remount or a lost network mount all answer False."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            try:
                os.write(fd, b"preread readiness probe\n" * 8)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(tmp)
            return True
        except OSError:
            return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

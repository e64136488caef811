"""The watched folder, by polling (works the same on Windows shares and Linux): a file is taken once
its size and modification time stayed the same for one poll, then removed from the folder once it
is queued (or quarantined). A WFDB record dropped as loose files (.hea + .mat/.dat) is taken when
its header and every signal file it names are there, zipped into one ECG. When the disk is too full
the file stays where it is and is taken as soon as there is room."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from preread.send.accept import Accepted, Intake, Quarantined, Refused
from preread.send.parcel import (
    WFDB_SIGNAL_SUFFIXES,
    ParcelError,
    wfdb_files,
    zip_record,
)

log = logging.getLogger("preread.send.watch")
SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".reason.txt")


class FolderWatcher:
    def __init__(self, folder: Path, intake: Intake, orphan_s: float = 600.0):
        self.folder, self.intake, self.orphan_s = folder, intake, orphan_s
        self._seen: dict[Path, tuple[int, float]] = {}  # path → (size, mtime) at the previous poll
        self._refused: set[Path] = set()

    def scan(self) -> int:
        """One poll; returns how many files were taken (queued or quarantined)."""
        if not self.folder.is_dir():
            return 0
        current: dict[Path, tuple[int, float]] = {}
        for path in self.folder.rglob("*"):
            name = path.name.lower()
            if not path.is_file() or name.startswith((".", "~")) or name.endswith(SKIP_SUFFIXES):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            current[path] = (st.st_size, st.st_mtime)
        stable = {p for p, sig in current.items() if self._seen.get(p) == sig}
        self._seen = current
        taken = 0
        for path in sorted(stable):
            if not path.exists():  # taken with its record already
                continue
            suffix = path.suffix.lower()
            if suffix == ".hea":
                taken += self._take_record(path, stable)
            elif suffix in WFDB_SIGNAL_SUFFIXES:
                taken += self._orphan_signal(path)
            else:
                taken += self._take([path], path.read_bytes(), path.name)
        return taken

    def _take_record(self, header: Path, stable: set[Path]) -> int:
        try:
            names = wfdb_files(header.read_text(encoding="latin-1"), header.stem)
        except ParcelError as exc:
            self.intake.quarantine(header.read_bytes(), header.name, exc.reason)
            header.unlink(missing_ok=True)
            return 1
        signals = [header.with_name(n) for n in names]
        if not all(p in stable for p in signals):  # still being copied: next poll
            if time.time() - header.stat().st_mtime > self.orphan_s:
                missing = ", ".join(p.name for p in signals if not p.exists())
                self.intake.quarantine(
                    header.read_bytes(), header.name, f"WFDB header without its signal file(s): {missing or 'unstable'}"
                )
                header.unlink(missing_ok=True)
                return 1
            return 0
        files = {p.name: p.read_bytes() for p in [header, *signals]}
        return self._take([header, *signals], zip_record(files), f"{header.stem}.zip")

    def _orphan_signal(self, path: Path) -> int:
        if path.with_suffix(".hea").exists() or path.with_suffix(".HEA").exists():
            return 0  # taken with its header
        if time.time() - path.stat().st_mtime < self.orphan_s:
            return 0
        self.intake.quarantine(path.read_bytes(), path.name, "WFDB signal file without its header (.hea)")
        path.unlink(missing_ok=True)
        return 1

    def _take(self, paths: list[Path], data: bytes, label: str) -> int:
        verdict = self.intake.take(data, label, "watch-folder")
        if isinstance(verdict, Refused):
            if paths[0] not in self._refused:
                log.error("%s stays in the watch folder: %s", label, verdict.reason)
                self._refused.add(paths[0])
            return 0
        assert isinstance(verdict, (Accepted, Quarantined))
        self._refused.discard(paths[0])
        for path in paths:  # queued durably (or put aside): only now is the original removed
            path.unlink(missing_ok=True)
        return 1

"""Re-identification keys for de-identified exports (serving/results/deid.py): pseudonyms, UID maps and
date offsets in their own SQLite file (``deid.key_store``; folder 0700, file 0600), apart from the worklist
database and never in an export. Whoever holds the key store (the service operator, for a patient's request
or a safety recall) can reverse an export; whoever holds only the export cannot."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path


class KeyStore:
    """Re-identification keys in their own SQLite file, readable by the service account only."""

    def __init__(self, path: str | Path, max_shift_days: int = 365):
        self.path = Path(path)
        self.max_shift_days = max_shift_days
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm files with wider permissions
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS keys (kind TEXT NOT NULL, original TEXT NOT NULL, "
            "pseudonym TEXT NOT NULL, PRIMARY KEY (kind, original), UNIQUE (kind, pseudonym))"
        )

    def _get(self, kind: str, original: str, make: Callable[[], str]) -> str:
        with self._lock:
            row = self._conn.execute(
                "SELECT pseudonym FROM keys WHERE kind=? AND original=?", (kind, original)
            ).fetchone()
            if row:
                return row[0]
            value = make()
            self._conn.execute("INSERT INTO keys (kind, original, pseudonym) VALUES (?, ?, ?)", (kind, original, value))
            return value

    def uid(self, original: str) -> str:
        """The export's UID for an original UID: random (2.25 + 128 bits), the same every time."""
        return self._get("uid", original, lambda: f"2.25.{int.from_bytes(secrets.token_bytes(16), 'big')}")

    def patient(self, original: str) -> str:
        return self._get("patient", original, lambda: f"P{secrets.token_hex(6).upper()}")

    def date_offset(self, patient_key: str) -> int:
        """Days every date of this patient moves by (never 0), the same for all their objects."""

        def make() -> str:
            days = secrets.randbelow(self.max_shift_days) + 1
            return str(-days if secrets.randbelow(2) else days)

        return int(self._get("date_offset", patient_key, make))

    def original(self, kind: str, pseudonym: str) -> str | None:
        """Re-identification (for the key holder only)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT original FROM keys WHERE kind=? AND pseudonym=?", (kind, pseudonym)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._conn.close()

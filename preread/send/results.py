"""Results back at the clinic: for every study it sent, the sender asks the service for the AI read
and, once a doctor signed, the final report (the printable PDF where the service offers
`GET /api/v1/studies/{uid}/report.pdf`, else the report JSON), and keeps them under
results/<study UID>/. An ECG that came back "repeat the ECG" (quality not acceptable) or any study
read as critical raises a notification: the terminal bell, a log line and a line in
notifications.log (appended and fsynced, for whatever watches it on the clinic PC)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from preread.send.config import SendConfig
from preread.send.queue import SendQueue
from preread.send.upload import backoff_s

log = logging.getLogger("preread.send.results")
SIGNED_REPORT = {"final", "amended"}


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Alert:
    study_uid: str
    label: str
    message: str


def alert_for(modality: str, read: dict[str, Any]) -> str | None:
    """What the clinic must hear about now, or None."""
    quality = read.get("quality") or {}
    if modality == "ECG" and quality.get("acceptable") is False:
        reasons = (
            "; ".join(
                str(r.get("text") or r.get("code") or r) if isinstance(r, dict) else str(r)
                for r in quality.get("reasons") or []
            )
            or "quality not acceptable"
        )
        return f"{quality.get('action') or 'repeat the ECG'}: {reasons}"
    level = (read.get("triage") or {}).get("level")
    if level == "critical":
        positive = [f.get("name") or f.get("code") for f in read.get("findings") or [] if f.get("positive")]
        return "CRITICAL: " + (", ".join(str(p) for p in positive) if positive else "read it now")
    return None


class Notifier:
    def __init__(self, path: Path, bell: bool = True):
        self.path, self.bell = path, bell
        self._lock = threading.Lock()

    def notify(self, alert: Alert) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}\t{alert.study_uid}\t{alert.label}\t{alert.message}\n"
        log.warning("study %s (%s): %s", alert.study_uid, alert.label, alert.message)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        if self.bell and sys.stdout.isatty():
            sys.stdout.write("\a")
            sys.stdout.flush()


class ResultsFetcher:
    def __init__(self, cfg: SendConfig, queue: SendQueue, client: httpx.Client, notifier: Notifier):
        self.cfg, self.queue, self.client, self.notifier = cfg, queue, client, notifier
        self.failures = 0

    def folder(self, study_uid: str) -> Path:
        return self.cfg.results_dir / study_uid

    def record_read(self, study: dict[str, Any], read: dict[str, Any], server_status: str | None = None) -> None:
        """Keep an AI read (from the ECG upload's answer or from the study), notify once if it needs it."""
        uid = study["study_uid"]
        path = self.folder(uid) / "ai-read.json"
        write_atomic(path, json.dumps(read, ensure_ascii=False, indent=1).encode("utf-8"))
        quality_ok = (read.get("quality") or {}).get("acceptable")
        self.queue.update_study(
            uid,
            read_file=str(path),
            level=(read.get("triage") or {}).get("level"),
            quality_ok=None if quality_ok is None else int(bool(quality_ok)),
            server_status=server_status or study.get("server_status") or "ai_read",
        )
        message = alert_for(study["modality"], read)
        if message and not study.get("notified"):
            self.notifier.notify(Alert(uid, study["label"], message))
            self.queue.update_study(uid, notified=1)

    def poll_due(self) -> int:
        """Ask about every study due; returns how many were asked about."""
        now = time.time()
        due = self.queue.studies_due(now, self.cfg.results.keep_polling_days * 86400)
        for study in due:
            try:
                self.poll(study)
                self.failures = 0
            except httpx.HTTPError as exc:
                self.failures += 1
                wait = backoff_s(self.failures, self.cfg.retry.initial_s, self.cfg.retry.max_s)
                log.info("results: %s: %s; next try in %.0f s", type(exc).__name__, exc, wait)
                self.queue.update_study(study["study_uid"], next_poll_at=time.time() + wait)
                break  # the link is down: the others wait too
        return len(due)

    def poll(self, study: dict[str, Any]) -> None:
        uid = study["study_uid"]
        headers = {"Authorization": f"Bearer {self.cfg.token()}"}
        response = self.client.get(f"/api/v1/studies/{uid}", headers=headers)
        next_poll = time.time() + self._interval(study)
        if response.status_code != 200:
            log.info("results of %s: HTTP %d", uid, response.status_code)
            self.queue.update_study(uid, next_poll_at=next_poll, polls=study["polls"] + 1)
            return
        detail = response.json()
        write_atomic(self.folder(uid) / "study.json", json.dumps(detail, ensure_ascii=False, indent=1).encode())
        if detail.get("ai_read") and not study.get("read_file"):
            self.record_read(study, detail["ai_read"], detail.get("status"))
        report_status = detail.get("report_status")
        values: dict[str, Any] = {
            "server_status": detail.get("status"),
            "report_status": report_status,
            "next_poll_at": next_poll,
            "polls": study["polls"] + 1,
        }
        if report_status in SIGNED_REPORT or detail.get("signed_at"):
            values["report_file"] = str(self._fetch_report(uid, headers))
        self.queue.update_study(uid, **values)

    def _interval(self, study: dict[str, Any]) -> float:
        """poll_s until the AI read is back; then doubling up to max_poll_s while a doctor has yet to sign."""
        cfg = self.cfg.results
        if not study.get("read_file"):
            return cfg.poll_s
        return min(cfg.max_poll_s, cfg.poll_s * 2 ** min(study["polls"], 16))

    def _fetch_report(self, uid: str, headers: dict[str, str]) -> Path:
        pdf = self.client.get(f"/api/v1/studies/{uid}/report.pdf", headers=headers)
        if pdf.status_code == 200 and pdf.headers.get("content-type", "").startswith("application/pdf"):
            path = self.folder(uid) / "report.pdf"
            write_atomic(path, pdf.content)
            return path
        report = self.client.get(f"/api/v1/studies/{uid}/report", headers=headers)
        report.raise_for_status()
        path = self.folder(uid) / "report.json"
        write_atomic(path, json.dumps(report.json(), ensure_ascii=False, indent=1).encode("utf-8"))
        return path

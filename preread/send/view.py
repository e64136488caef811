"""What the clinic sees: each study's state — queued, sent, AI read (with its level), signed, or
refused with the reason — as a rich table, live while the sender runs (`preread send`) or once
(`preread send --status`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from preread.send.queue import QUEUED, REFUSED, SendQueue

LEVEL_STYLE = {"critical": "bold red", "urgent": "yellow", "routine": "green"}


@dataclass(frozen=True)
class StudyState:
    label: str
    modality: str
    study_uid: str
    state: str  # queued · sent · AI read · no AI read · signed · refused
    detail: str
    style: str = ""
    since: float = 0.0


def study_states(queue: SendQueue) -> list[StudyState]:
    """One line per study (or per not-yet-sent ECG file, whose study UID the service gives)."""
    studies = {s["study_uid"]: s for s in queue.studies()}
    by_study: dict[str, list[dict[str, Any]]] = {}
    for item in queue.items():
        by_study.setdefault(item["study_uid"] or item["key"], []).append(item)
    out = []
    for uid, items in by_study.items():
        first = items[0]
        refused = [i for i in items if i["state"] == REFUSED]
        queued = [i for i in items if i["state"] == QUEUED]
        if refused:
            out.append(
                StudyState(
                    first["label"],
                    first["modality"],
                    uid,
                    "refused",
                    refused[0]["last_error"] or "",
                    "bold red",
                    first["queued_at"],
                )
            )
        elif queued:
            retry = f"; last try: {queued[0]['last_error']}" if queued[0]["last_error"] else ""
            part = f"{len(items) - len(queued)}/{len(items)} sent" if len(items) > 1 else "waiting for the link"
            out.append(
                StudyState(first["label"], first["modality"], uid, "queued", part + retry, "", first["queued_at"])
            )
        else:
            out.append(_result_state(studies.get(uid), first))
    return out


def _result_state(study: dict[str, Any] | None, item: dict[str, Any]) -> StudyState:
    label, modality, since = item["label"], item["modality"], item["sent_at"] or item["queued_at"]
    uid = item["study_uid"] or item["key"]
    if study is None:
        return StudyState(label, modality, uid, "sent", "", "", since)
    if study["report_file"]:
        return StudyState(label, modality, uid, "signed", Path(study["report_file"]).name, "bold", since)
    if study["read_file"]:
        level = study["level"] or "?"
        detail = "repeat the ECG" if study["quality_ok"] == 0 else f"level {level}"
        style = "bold magenta" if study["quality_ok"] == 0 else LEVEL_STYLE.get(level, "")
        return StudyState(label, modality, uid, "AI read", detail, style, since)
    if study["server_status"] in ("no_ai_read", "ai_failed"):
        return StudyState(label, modality, uid, "no AI read", study["server_status"], "", since)
    return StudyState(label, modality, uid, "sent", "waiting for the AI read", "", since)


def render(queue: SendQueue, link: str = "", limit: int = 25) -> Group:
    states = study_states(queue)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    total = len(states) or 1
    back = counts.get("AI read", 0) + counts.get("signed", 0) + counts.get("no AI read", 0)
    summary = Text(
        f"link: {link or '?'}   "
        + "   ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        + f"   results back: {back}/{len(states)}"
    )
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("study", "type", "state", "detail", "age"):
        table.add_column(column)
    now = time.time()
    for s in sorted(states, key=lambda s: -s.since)[:limit]:
        table.add_row(
            s.label[:32],
            s.modality,
            Text(s.state, style=s.style),
            Text(s.detail[:70], style=s.style),
            _age(now - s.since),
        )
    return Group(summary, ProgressBar(total=total, completed=back, width=60), table)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

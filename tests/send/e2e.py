"""The store-and-forward run the issue's "done when" describes, at any size: studies dropped in the
clinic's watch folder and sent to its C-STORE listener, a link that goes up and down (refused,
stalled, reset mid-transfer), the sender killed with -9 along the way, then the checks: every study
stored exactly once at the county, every result back at the clinic, nothing lost or duplicated."""

from __future__ import annotations

import io
import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import pydicom

from bench.county import County, sender_config
from bench.send_studies import Study
from serving.store.work import ai_read_counts
from tests.send.conftest import SenderProcess, drop_in, wait_until


def flap(county: County, stop: threading.Event, seed: int, up_s: float = 2.0, down_s: float = 0.8) -> list[str]:
    """The link goes up and down until ``stop``: up a while, then refused, stalled or resetting."""
    rng, modes = random.Random(seed), []
    while not stop.is_set():
        mode = "up" if not modes or modes[-1] != "up" else rng.choice(["down", "stall", "reset"])
        county.proxy.set_mode(mode)
        modes.append(mode)
        stop.wait(rng.uniform(0.5, up_s) if mode == "up" else rng.uniform(0.2, down_s))
    county.proxy.set_mode("up")
    return modes


def clinic_rows(state: Path) -> tuple[list[dict], list[dict]]:
    db = state / "queue.db"
    if not db.exists():
        return [], []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        items = [dict(r) for r in conn.execute("SELECT * FROM items")]
        studies = [dict(r) for r in conn.execute("SELECT * FROM studies")]
    return items, studies


def cstore(port: int, studies: list[Study]) -> list[int]:
    from pynetdicom import AE

    ae = AE(ae_title="XRAYUNIT")
    for s in studies:
        ds = pydicom.dcmread(io.BytesIO(s.data), stop_before_pixels=True)
        ae.add_requested_context(str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", port, ae_title="CLINICSEND")
    assert assoc.is_established, "the sender's C-STORE listener refused the association"
    statuses = [int(assoc.send_c_store(pydicom.dcmread(io.BytesIO(s.data))).Status) for s in studies]
    assoc.release()
    return statuses


def run_store_and_forward(
    tmp_path: Path, county: County, ecgs: list[Study], films: list[Study], kills: int, timeout_s: float, seed: int = 1
) -> dict:
    config = sender_config(tmp_path, county)
    state, inbox = config.parent / "state", config.parent / "inbox"
    listener_port = __import__("yaml").safe_load(config.read_text())["listener"]["port"]
    started = time.monotonic()
    sender = SenderProcess(config).start()
    stop = threading.Event()
    flapper = threading.Thread(target=flap, args=(county, stop, seed), daemon=True)
    flapper.start()
    try:
        for s in ecgs:
            drop_in(inbox, s.name, s.data)
        wait_until(lambda: _listening(listener_port), 60, "the sender's C-STORE listener")
        assert all(status == 0 for status in cstore(listener_port, films)), "C-STORE not acknowledged"
        total = len(ecgs) + len(films)
        for k in range(kills):  # kill -9 once a share of the work went out, then start again
            goal = total * (k + 1) // (kills + 1)
            wait_until(
                lambda goal=goal: sum(i["state"] == "sent" for i in clinic_rows(state)[0]) >= goal,
                timeout_s,
                f"{goal} items sent before kill {k + 1}\n{sender.tail()}",
                0.1,
            )
            sender.kill9()
            sender = SenderProcess(config).start()
        wait_until(lambda: not any(inbox.iterdir()), timeout_s, f"the watch folder to empty\n{sender.tail()}")
        stop.set()
        flapper.join()
        print(f"[e2e] link steady after {time.monotonic() - started:.1f} s; proxy {county.proxy.stats}", flush=True)
        wait_until(lambda: _done(state, total), timeout_s, f"every result back at the clinic\n{sender.tail()}", 0.5)
        print(f"[e2e] all results back after {time.monotonic() - started:.1f} s", flush=True)
    finally:
        stop.set()
        sender.stop()
    return verify(county, state, ecgs, films)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _done(state: Path, total: int) -> bool:
    items, studies = clinic_rows(state)
    return len(items) == total and all(i["state"] == "sent" for i in items) and all(s["read_file"] for s in studies)


def county_totals(db) -> tuple[int, int]:
    """Every instance received (not the county's own AI result objects) and every study the county
    holds: a resend stored twice would show here."""
    from sqlalchemy import func, select

    from serving.store.schema import Instance
    from serving.store.schema import Study as StudyRow

    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Instance).where(Instance.source != "ai")),
            session.scalar(select(func.count()).select_from(StudyRow)),
        )


def verify(county: County, state: Path, ecgs: list[Study], films: list[Study]) -> dict:
    """Exactly once at the county, every result back at the clinic, nothing lost or duplicated."""
    db = county.services.db
    items, studies = clinic_rows(state)
    sent_uids = {i["study_uid"] for i in items}
    county_studies = {uid: db.get_study(uid) for uid in sent_uids}
    missing = [uid for uid, s in county_studies.items() if s is None]
    instances = [i for s in county_studies.values() if s is not None for i in s.instances]
    all_instances, all_studies = county_totals(db)
    reads = ai_read_counts(db, sorted(sent_uids))
    film_sops = {pydicom.dcmread(io.BytesIO(f.data), stop_before_pixels=True).SOPInstanceUID for f in films}
    report = {
        "sent_items": len(items),
        "expected": len(ecgs) + len(films),
        "clinic_studies": len(studies),
        "county_studies": sum(s is not None for s in county_studies.values()),
        "missing_at_county": len(missing),
        "county_instances": len(instances),
        "all_county_instances": all_instances,
        "all_county_studies": all_studies,
        "read_more_than_once": sum(n > 1 for n in reads.values()),
        "films_stored": sum(db.find_instance(str(sop)) is not None for sop in film_sops),
        "results_back": sum(bool(s["read_file"]) and Path(s["read_file"]).is_file() for s in studies),
    }
    # The clinic's copy of each read is the county's read of that study.
    mismatched = [
        s["study_uid"]
        for s in studies
        if json.loads(Path(s["read_file"]).read_text()) != county_studies[s["study_uid"]].ai_read
    ]
    report["results_mismatched"] = len(mismatched)
    expected_alerts = {
        uid
        for uid, s in county_studies.items()
        if s is not None
        and s.ai_read
        and (
            (s.modality == "ECG" and s.ai_read.get("quality", {}).get("acceptable") is False)
            or s.ai_read.get("triage", {}).get("level") == "critical"
        )
    }
    notes = state / "notifications.log"
    alerted = {line.split("\t")[1] for line in notes.read_text().splitlines()} if notes.exists() else set()
    report["alerts_expected"], report["alerts_missing"] = len(expected_alerts), len(expected_alerts - alerted)
    report["alerts_unexpected"] = len(alerted - expected_alerts)
    return report

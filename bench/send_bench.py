"""The clinic sender on a thin link (`preread bench send [--quick] [--json FILE]`, or
`python -m bench.send_bench`): a day's queue of a county's clinics (~40 studies: WFDB zips as carts
write them, ECG JSON, DICOM 12-lead waveforms, NIH chest films wrapped as DX) handed to
`python -m preread.send` (a process of its own, as on the clinic PC), sent to the county through a
shaping proxy at 256 kbit/s each way with 5% drops. Reports:

1. bytes on the wire per study vs the raw file, per kind (what the sender's lossless encodings sent
   on the try that went through, from its queue);
2. the time to drain the queue (the first study queued → the last stored at the county) and until
   every AI read is back at the clinic; the bytes that crossed the link, retries included.

"5% drops": each 16 KiB forwarded is lost with probability 0.05, which breaks its connection (TCP
cannot lose a segment silently: the request fails and the sender must send it again). The county is
the real service in-process (API, ingest, store, dispatcher) with stand-in readers: the read itself
is not measured here. Prints tables; writes JSON (default bench/results/send.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.county import county_service, sender_config
from bench.link_proxy import FaultProxy
from bench.send_studies import cinc_zips, ptbxl_jsons, ptbxl_zips, radiographs, waveform_dicoms
from bench.standin_readers import StandInEcgReader

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LINK_KBIT_S, DROP_RATE = 256, 0.05
DEFAULT_JSON = REPO / "bench" / "results" / "send.json"


def day_queue(quick: bool) -> dict[str, list]:
    ptbxl = DATA / "ecg" / "ptbxl"
    if quick:
        return {
            "ECG WFDB zip (CinC)": cinc_zips(DATA / "ecg" / "cinc2021", 2),
            "ECG JSON (PTB-XL)": ptbxl_jsons(ptbxl, 50, 1),
            "ECG DICOM waveform": waveform_dicoms(1),
            "radiograph DX (NIH PNG wrapped)": radiographs(DATA / "cxr" / "nih", 1),
        }
    return {
        "ECG WFDB zip (CinC)": cinc_zips(DATA / "ecg" / "cinc2021", 10),
        "ECG WFDB zip (PTB-XL)": ptbxl_zips(ptbxl, 0, 10),
        "ECG JSON (PTB-XL)": ptbxl_jsons(ptbxl, 50, 6),
        "ECG DICOM waveform": waveform_dicoms(6),
        "radiograph DX (NIH PNG wrapped)": radiographs(DATA / "cxr" / "nih", 8),
    }


def drain(groups: dict[str, list], workdir: Path, console: Console) -> tuple[dict, list[dict]]:
    """The day's queue through `python -m preread.send` to the county behind the shaped link: the
    drain figures and the per-kind wire rows."""
    county, close = county_service(workdir / "county", None, StandInEcgReader())
    shaped = FaultProxy(county.port, segment_drop_rate=DROP_RATE, rate_bytes_s=LINK_KBIT_S * 1000 / 8, seed=11)
    county.proxy.close()
    county.proxy = shaped
    config = sender_config(
        workdir,
        county,
        listener={"enabled": False},
        watch_folder=None,
        retry={"initial_s": 1.0, "max_s": 30.0, "request_timeout_s": 120.0},
        results={"poll_s": 5.0},
    )
    files = workdir / "day"
    kind_of = _write_day(groups, files)
    started = time.time()
    try:
        subprocess.run(
            [sys.executable, "-m", "preread.send", "--config", str(config), "--no-view", "--until-done", str(files)],
            check=True,
            timeout=3600,
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        wall = time.time() - started
    finally:
        shaped.close()
        close()
    state = config.parent / "state"
    with sqlite3.connect(state / "queue.db") as conn:
        conn.row_factory = sqlite3.Row
        items = [dict(r) for r in conn.execute("SELECT * FROM items")]
    reads = [p.stat().st_mtime for p in (state / "results").glob("*/ai-read.json")]
    first = min(i["queued_at"] for i in items)
    raw = sum(i["size_bytes"] for i in items)
    result = {
        "studies": len(items),
        "link_kbit_s": LINK_KBIT_S,
        "segment_drop_rate": DROP_RATE,
        "sent": sum(i["state"] == "sent" for i in items),
        "results_back": len(reads),
        "drain_s": round(max(i["sent_at"] or 0 for i in items) - first, 1),
        "results_back_s": round(max(reads) - first, 1) if reads else None,
        "sender_process_wall_s": round(wall, 1),
        "raw_bytes": raw,
        "wire_bytes": sum(i["wire_bytes"] or 0 for i in items),
        "bytes_up_on_link": shaped.stats["bytes_up"],
        "connections_broken": shaped.stats["reset"],
        "uncompressed_no_loss_estimate_s": round(raw / (LINK_KBIT_S * 1000 / 8), 1),
    }
    return result, _wire_rows(groups, items, kind_of)


def _write_day(groups: dict[str, list], files: Path) -> dict[str, str]:
    """The day's studies as files in ``files`` (the folder handed to the sender); file name → kind."""
    files.mkdir()
    kind_of = {}
    for kind, studies in groups.items():
        for s in studies:
            (files / s.name).write_bytes(s.data)
            kind_of[s.name] = kind
    return kind_of


def _wire_rows(groups: dict[str, list], items: list[dict], kind_of: dict[str, str]) -> list[dict]:
    """Per kind of study: the mean raw and on-the-wire bytes (the sender's queue rows) and their ratio."""
    rows = []
    for kind in groups:
        mine = [i for i in items if kind_of.get(i["label"]) == kind]
        raw_sizes, wire_sizes = [i["size_bytes"] for i in mine], [i["wire_bytes"] or 0 for i in mine]
        rows.append(
            {
                "kind": kind,
                "n": len(mine),
                "raw_bytes": round(statistics.mean(raw_sizes)),
                "wire_bytes": round(statistics.mean(wire_sizes)),
                "wire_over_raw": round(sum(wire_sizes) / sum(raw_sizes), 3),
            }
        )
    return rows


def run_send_bench(json_path: str | Path | None = None, quick: bool = False) -> int:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="send-bench-") as tmp:
        result, rows = drain(day_queue(quick), Path(tmp), console)
    table = Table(title="bytes on the wire per study (lossless; the try that went through)")
    for column in ("kind", "n", "raw bytes", "wire bytes", "wire / raw"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for r in rows:
        table.add_row(
            r["kind"], str(r["n"]), f"{r['raw_bytes']:,}", f"{r['wire_bytes']:,}", f"{r['wire_over_raw']:.2f}"
        )
    console.print(table)
    table = Table(title=f"a day's queue over {LINK_KBIT_S} kbit/s, {DROP_RATE:.0%} of 16 KiB lost")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    path = Path(json_path or DEFAULT_JSON)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"wire": rows, "drain": result, "quick": quick}, indent=2))
    console.print(f"written {path}")
    return 0 if result["sent"] == result["studies"] == result["results_back"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args()
    return run_send_bench(args.json, args.quick)


if __name__ == "__main__":
    raise SystemExit(main())

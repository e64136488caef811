"""The clinic sender on a thin link (`python -m bench.send_bench [--quick] [--json FILE]`):

1. bytes on the wire per study vs the raw file, per kind (WFDB zips as carts write them, ECG JSON,
   DICOM 12-lead waveforms, NIH chest films wrapped as DX), with the sender's lossless encodings;
2. the time to drain a day's queue of a county's clinics (~40 studies: 32 ECGs, 8 films) through a
   shaping proxy at 256 kbit/s each way with 5% drops, until every
   study is stored at the county, and until every AI read is back at the clinic. "5% drops": each
   16 KiB segment forwarded is lost with probability 0.05, which breaks its connection (TCP cannot
   lose a segment silently: the request fails and the sender must send again).

Also `preread bench send [--quick] [--json FILE]`. The county is the real service in-process (API, ingest, store, dispatcher) with stand-in readers:
the read itself is not what is measured here. Prints a table; writes JSON (default
bench/results/send.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.link_proxy import FaultProxy
from preread.send.app import Sender
from preread.send.config import load_send_config
from preread.send.parcel import identify
from preread.send.wire import prepare

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LINK_KBIT_S, DROP_RATE = 256, 0.05
DEFAULT_JSON = REPO / "bench" / "results" / "send.json"


def studies(quick: bool) -> dict[str, list]:
    from tests.send.studies import (
        cinc_zips,
        ptbxl_jsons,
        ptbxl_zips,
        radiographs,
        waveform_dicoms,
    )

    n = 3 if quick else 10
    return {"ECG WFDB zip (CinC)": cinc_zips(DATA / "ecg" / "cinc2021", n),
            "ECG WFDB zip (PTB-XL)": ptbxl_zips(DATA / "ecg" / "ptbxl", 0, n),
            "ECG JSON (PTB-XL)": ptbxl_jsons(DATA / "ecg" / "ptbxl", 50, n),
            "ECG DICOM waveform": waveform_dicoms(n),
            "radiograph DX (NIH PNG wrapped)": radiographs(DATA / "cxr" / "nih", n)}


def wire_rows(groups: dict[str, list]) -> list[dict]:
    rows = []
    for kind, items in groups.items():
        raw, wire = [], []
        for s in items:
            parcel = identify(s.data, s.name)
            body = prepare(parcel.kind, s.data, True, frozenset({"gzip", "deflate"}))
            raw.append(len(s.data))
            wire.append(len(body.content))
        rows.append({"kind": kind, "n": len(items), "raw_bytes": round(statistics.mean(raw)),
                     "wire_bytes": round(statistics.mean(wire)),
                     "wire_over_raw": round(sum(wire) / sum(raw), 3)})
    return rows


def day_queue(groups: dict[str, list], quick: bool) -> list:
    if quick:
        return [s for items in groups.values() for s in items[:2]]
    ecgs = (groups["ECG WFDB zip (CinC)"] + groups["ECG WFDB zip (PTB-XL)"] + groups["ECG JSON (PTB-XL)"][:6]
            + groups["ECG DICOM waveform"][:6])
    return ecgs + groups["radiograph DX (NIH PNG wrapped)"][:8]


def drain(queue: list, workdir: Path) -> dict:
    from tests.send.conftest import FakeEcgReader, county_service, sender_config

    county, close = county_service(workdir / "county", None, FakeEcgReader())
    shaped = FaultProxy(county.port, segment_drop_rate=DROP_RATE, rate_bytes_s=LINK_KBIT_S * 1000 / 8, seed=11)
    county.proxy.close()
    county.proxy = shaped
    config = sender_config(workdir, county, listener={"enabled": False}, watch_folder=None,
                           retry={"initial_s": 1.0, "max_s": 30.0, "request_timeout_s": 120.0},
                           results={"poll_s": 5.0})
    sender = Sender(load_send_config(config), bell=False)
    try:
        for s in queue:
            sender.intake.take(s.data, s.name, "bench")
        started = time.monotonic()
        threads = sender.start()
        sent_at = results_at = None
        while results_at is None and time.monotonic() - started < 3600:
            time.sleep(0.5)
            if sent_at is None and not sender.queue.counts().get("queued"):
                sent_at = time.monotonic() - started
            if sent_at is not None and sender.done():
                results_at = time.monotonic() - started
        items = sender.queue.items()
        sender.stop(threads)
    finally:
        shaped.close()
        close()
    raw = sum(i["size_bytes"] for i in items)
    return {"studies": len(queue), "link_kbit_s": LINK_KBIT_S, "drop_rate": DROP_RATE,
            "sent": sum(i["state"] == "sent" for i in items), "drain_s": _r(sent_at), "results_back_s": _r(results_at),
            "raw_bytes": raw, "wire_bytes_first_try": sum(i["wire_bytes"] or 0 for i in items),
            "bytes_up_on_link": shaped.stats["bytes_up"], "connections_reset": shaped.stats["reset"],
            "uncompressed_drain_estimate_s": round(raw / (LINK_KBIT_S * 1000 / 8), 1)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("preread.send").setLevel(logging.INFO)  # progress: each upload and retry
    return run_send_bench(args.json, args.quick)


def run_send_bench(json_path: str | Path | None = None, quick: bool = False) -> int:
    groups = studies(quick)
    rows = wire_rows(groups)
    console = Console()
    table = Table(title="bytes on the wire per study (lossless)")
    for column in ("kind", "n", "raw bytes", "wire bytes", "wire / raw"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for r in rows:
        table.add_row(r["kind"], str(r["n"]), f"{r['raw_bytes']:,}", f"{r['wire_bytes']:,}", f"{r['wire_over_raw']:.2f}")
    console.print(table)
    with tempfile.TemporaryDirectory(prefix="send-bench-") as tmp:
        result = drain(day_queue(groups, quick), Path(tmp))
    table = Table(title=f"a day's queue over {LINK_KBIT_S} kbit/s, {DROP_RATE:.0%} of 16 KiB segments lost")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    path = Path(json_path or DEFAULT_JSON)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"wire": rows, "drain": result, "quick": quick}, indent=2))
    console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Locust scenario: a county's township and village sites sending ECGs and chest X-rays to preread.

Each locust user is one site (its own grassroots token), sending at a constant rate: 12-lead ECGs as
CinC 2021 WFDB zips over POST /api/v1/ecg and chest radiographs (NIH PNGs wrapped as DX) over STOW-RS,
each object new (the ECG header carries a unique comment; the radiograph unique UIDs), so nothing is
deduplicated. Every acknowledged (2xx) object is appended to $PREREAD_LOAD_ACKS as JSON lines, which
bench/load_test.py checks against the database after the run (zero loss, exactly one AI read).

Settings come from the environment (bench/load_test.py sets them):
  PREREAD_LOAD_TOKENS   JSON file: {site: token}
  PREREAD_LOAD_ACKS     output file for acknowledged objects
  PREREAD_LOAD_RATE     requests per second per site
  PREREAD_LOAD_ECG_SHARE  fraction of requests that are ECGs (the rest chest X-rays)
  PREREAD_LOAD_DATA     the shared data folder (../shared/data)
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import threading
import uuid
import zipfile
from pathlib import Path

from locust import HttpUser, constant_throughput, events, task

from datasets.imaging import wrap_png_as_dicom
from serving.ingest.dicom import encode

DATA = Path(os.environ.get("PREREAD_LOAD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TOKENS: dict[str, str] = (
    json.loads(Path(os.environ["PREREAD_LOAD_TOKENS"]).read_text()) if os.environ.get("PREREAD_LOAD_TOKENS") else {}
)
RATE = float(os.environ.get("PREREAD_LOAD_RATE", "0.1"))
ECG_SHARE = float(os.environ.get("PREREAD_LOAD_ECG_SHARE", "0.67"))
BOUNDARY = "preread-load-boundary"
_sites = itertools.cycle(sorted(TOKENS))
_site_lock = threading.Lock()
_acks_lock = threading.Lock()
_acks = open(os.environ.get("PREREAD_LOAD_ACKS", os.devnull), "a", buffering=1)


def _ecg_records() -> list[tuple[str, str, bytes]]:
    folder = DATA / "ecg" / "cinc2021"
    return [(p.stem, p.read_text(), (folder / f"{p.stem}.mat").read_bytes()) for p in sorted(folder.glob("*.hea"))]


UID_DIGITS = 36  # placeholders of a fixed length, replaced per request by unique UIDs of that length


def _placeholder(tag: int) -> str:
    return f"2.25.{tag}" + "0" * (UID_DIGITS - 1)


def _cxr_templates() -> list[bytes]:
    pngs = sorted((DATA / "cxr" / "nih").rglob("*.png"))[:8]
    out = []
    for png in pngs:
        ds = wrap_png_as_dicom(png, patient_name="Load^Test", patient_id="LOAD", study_uid=_placeholder(1))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = _placeholder(2), _placeholder(3)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out.append(encode(ds))
    return out


ECGS = _ecg_records()
CXRS = _cxr_templates()


def _unique_uid() -> str:
    return "2.25." + str(uuid.uuid4().int).rjust(UID_DIGITS, "1")[:UID_DIGITS]


def _ack(kind: str, site: str, study_uid: str, sop_uid: str | None, status: int, seconds: float) -> None:
    with _acks_lock:
        _acks.write(
            json.dumps(
                {
                    "kind": kind,
                    "site": site,
                    "study_uid": study_uid,
                    "sop_uid": sop_uid,
                    "status": status,
                    "seconds": round(seconds, 4),
                }
            )
            + "\n"
        )


class Site(HttpUser):
    """One township or village site."""

    wait_time = constant_throughput(RATE)

    def on_start(self):
        with _site_lock:
            self.site = next(_sites)
        self.headers = {"Authorization": f"Bearer {TOKENS[self.site]}"}

    @task
    def send(self):
        if random.random() < ECG_SHARE:
            self.send_ecg()
        else:
            self.send_cxr()

    def send_ecg(self):
        record, header, mat = random.choice(ECGS)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:  # a unique comment makes a new object (content UID)
            zf.writestr(f"{record}.hea", header.rstrip("\n") + f"\n# preread load {uuid.uuid4().hex}\n")
            zf.writestr(f"{record}.mat", mat)
        with self.client.post(
            f"/api/v1/ecg?site={self.site}",
            data=buffer.getvalue(),
            name="ECG (WFDB zip)",
            headers={**self.headers, "content-type": "application/zip"},
            catch_response=True,
        ) as r:
            if r.status_code in (200, 201):
                _ack("ecg", self.site, r.json()["study_uid"], None, r.status_code, r.elapsed.total_seconds())
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    def send_cxr(self):
        study, series, sop = _unique_uid(), _unique_uid(), _unique_uid()
        data = random.choice(CXRS)
        for placeholder, uid in ((_placeholder(1), study), (_placeholder(2), series), (_placeholder(3), sop)):
            data = data.replace(placeholder.encode(), uid.encode())
        body = (
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        with self.client.post(
            f"/dicomweb/studies?site={self.site}",
            data=body,
            name="CXR (STOW-RS)",
            headers={
                **self.headers,
                "content-type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            },
            catch_response=True,
        ) as r:
            if r.status_code == 200:
                _ack("cxr", self.site, study, sop, r.status_code, r.elapsed.total_seconds())
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")


@events.quitting.add_listener
def _close(environment, **_kw):
    _acks.close()

"""The whole ECG pre-read in-process, as a replica does it for each upload: parse the bytes (DICOM
waveform or WFDB zip), validate, measure (delineation, quality), run the network, make statements and
triage — ECGs per second on this machine, with the cost of each step per ECG.

The uploads are real: pydicom's Mortara 12-lead ECG (1000 Hz, resampled to 500 Hz for measuring) and
the 30 CinC 2021 records (500 Hz) as WFDB zips, alternating.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from rich.table import Table

from datasets.ecg.readers import read_ecg
from datasets.ecg.validate import validate_record
from models.ecg.pipeline import EcgInput, measure_and_check

GOAL_PER_S = 40.0


@dataclass
class Upload:
    body: bytes
    content_type: str
    label: str


def dicom_ecg_bodies(n: int) -> list[bytes]:
    """n copies of pydicom's real 12-lead ECG, each with new Study/Series/SOP UIDs."""
    template = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    bodies = []
    for _ in range(n):
        template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        buffer = io.BytesIO()
        template.save_as(buffer, enforce_file_format=True)
        bodies.append(buffer.getvalue())
    return bodies


def sample_uploads(shared_data: Path, n: int) -> list[Upload]:
    """``n`` uploads alternating DICOM waveform / WFDB zip."""
    headers = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))
    if not headers:
        raise SystemExit(f"bench ecg: no CinC records under {shared_data / 'ecg' / 'cinc2021'}")
    zips = []
    for header in headers:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.write(header, header.name)
            archive.write(header.with_suffix(".mat"), header.with_suffix(".mat").name)
        zips.append(Upload(buffer.getvalue(), "application/zip", f"WFDB {header.stem}"))
    dicoms = [Upload(body, "application/dicom", "DICOM Mortara") for body in dicom_ecg_bodies(max(1, n // 2))]
    uploads = []
    for i in range(n):
        uploads.append(dicoms[(i // 2) % len(dicoms)] if i % 2 == 0 else zips[(i // 2) % len(zips)])
    return uploads


def whole_read(reader, uploads: list[Upload], batch: int) -> dict[str, float]:
    """ECGs/s through parse → validate → EcgPreReader.read_batch, in batches of ``batch``; and the
    per-ECG milliseconds of parsing, of the measurement+quality step alone, and of the network alone."""

    def parse(upload: Upload) -> EcgInput:
        record = validate_record(read_ecg(upload.body, upload.content_type))
        return EcgInput(record.signals, record.sampling_rate, patient=dict(record.patient))

    reader.read_batch([parse(u) for u in uploads[:batch]])  # warm-up: imports, filter designs, ORT
    started, cpu_started = time.perf_counter(), time.process_time()
    parse_s = 0.0
    for i in range(0, len(uploads), batch):
        t0 = time.perf_counter()
        items = [parse(u) for u in uploads[i : i + batch]]
        parse_s += time.perf_counter() - t0
        reads = reader.read_batch(items)
        assert len(reads) == len(items)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    items = [parse(u) for u in uploads[: 2 * batch]]
    t0 = time.perf_counter()
    for item in items:
        measure_and_check(item)
    measure_ms = (time.perf_counter() - t0) * 1000 / len(items)
    tensors = np.stack([reader.preprocess(item) for item in items[:batch]]).astype(np.float32)
    t0 = time.perf_counter()
    reader.backend.predict(tensors)
    network_ms = (time.perf_counter() - t0) * 1000 / len(tensors)
    return {
        "per_s": len(uploads) / elapsed,
        "n": len(uploads),
        "batch": batch,
        # CPU time of this process (all threads) per ECG: what 2 idle cores could do is 2000 / this.
        "cpu_ms": cpu * 1000 / len(uploads),
        "per_s_2_cores_from_cpu": 2000.0 / (cpu * 1000 / len(uploads)),
        "parse_ms": parse_s * 1000 / len(uploads),
        "measure_quality_ms": measure_ms,
        "network_ms": network_ms,
    }


def whole_read_by_kind(reader, uploads: list[Upload], batch: int) -> dict[str, dict[str, float]]:
    """``whole_read`` on the mix, and on each upload kind alone (their parse costs differ tenfold)."""
    rows = {"mixed": whole_read(reader, uploads, batch)}
    for kind in sorted({u.content_type for u in uploads}):
        rows[kind] = whole_read(reader, [u for u in uploads if u.content_type == kind], batch)
    return rows


def print_whole_read(rows: dict[str, dict[str, float]], console) -> None:
    table = Table(
        title="Whole ECG pre-read in-process (parse + validate + measure + quality + network + statements + triage)"
    )
    for column in (
        "uploads",
        "ECGs",
        "batch",
        "ECGs/s",
        "goal",
        "CPU ms/ECG",
        "2 cores by CPU time",
        "parse ms/ECG",
        "measure+quality ms/ECG",
        "network ms/ECG",
    ):
        table.add_column(column, justify="right")
    names = {
        "mixed": "DICOM + WFDB alternating",
        "application/dicom": "DICOM (Mortara, 1000 Hz)",
        "application/zip": "WFDB zip (CinC, 500 Hz)",
    }
    for kind, result in rows.items():
        table.add_row(
            names.get(kind, kind),
            str(result["n"]),
            str(result["batch"]),
            f"{result['per_s']:.1f}",
            f"≥ {GOAL_PER_S:g}",
            f"{result['cpu_ms']:.1f}",
            f"{result['per_s_2_cores_from_cpu']:.1f}/s",
            f"{result['parse_ms']:.1f}",
            f"{result['measure_quality_ms']:.1f}",
            f"{result['network_ms']:.1f}",
        )
    console.print(table)
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        console.print(
            f"[yellow]machine busy (load {load:.1f} on {os.cpu_count()} cores): ECGs/s is low by the "
            "sharing; the CPU-time column is the capacity of idle cores[/yellow]"
        )

"""Real studies as a clinic's sender gets them, each one distinct, for the sender's benchmark
(bench/send_bench.py) and tests: CinC and PTB-XL WFDB records zipped as a cart uploads them, PTB-XL
records as ECG JSON, pydicom's real 12-lead waveform with rewritten UIDs, and NIH chest films wrapped
as DX DICOM. Built in memory from the files given (the real data under ../shared/data) and
pydicom's test file; nothing is written."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from datasets.ecg.readers import read_wfdb
from datasets.imaging.wrap import wrap_png_as_dicom


@dataclass(frozen=True)
class Study:
    """One study as a file: its name, its bytes and what kind of study it is."""

    name: str  # file name as dropped in the watch folder
    data: bytes
    kind: str  # ecg-zip, ecg-json, ecg-dicom, cxr


def _zip(files: dict[str, bytes]) -> bytes:
    """``files`` (name → bytes) as one zip archive, stored uncompressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:  # stored, as carts often write them
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def cinc_zips(cinc_dir: Path, n: int) -> list[Study]:
    """The first ``n`` CinC 2021 records of ``cinc_dir`` (.hea + .mat), each zipped."""
    records = sorted(p.stem for p in cinc_dir.glob("*.hea"))[:n]
    return [
        Study(f"{r}.zip", _zip({f"{r}{s}": (cinc_dir / f"{r}{s}").read_bytes() for s in (".hea", ".mat")}), "ecg-zip")
        for r in records
    ]


def ptbxl_records(ptbxl_dir: Path, start: int, n: int) -> list[Path]:
    """The headers of ``n`` PTB-XL 500 Hz records from the ``start``-th (in name order)."""
    headers = sorted((ptbxl_dir / "records500").rglob("*_hr.hea"))
    return headers[start : start + n]


def ptbxl_zips(ptbxl_dir: Path, start: int, n: int) -> list[Study]:
    """PTB-XL records (ptbxl_records) as zipped WFDB (.hea + .dat)."""
    out = []
    for hea in ptbxl_records(ptbxl_dir, start, n):
        files = {hea.name: hea.read_bytes(), hea.with_suffix(".dat").name: hea.with_suffix(".dat").read_bytes()}
        out.append(Study(f"{hea.stem}.zip", _zip(files), "ecg-zip"))
    return out


def ptbxl_jsons(ptbxl_dir: Path, start: int, n: int) -> list[Study]:
    """PTB-XL records (ptbxl_records) as ECG JSON: the leads in mV to 3 decimals, a patient id."""
    out = []
    for hea in ptbxl_records(ptbxl_dir, start, n):
        zipped = _zip({hea.name: hea.read_bytes(), hea.with_suffix(".dat").name: hea.with_suffix(".dat").read_bytes()})
        record = read_wfdb(zipped)
        leads = {lead: [round(float(v), 3) for v in record.signals[i]] for i, lead in enumerate(record.leads)}
        doc = {
            "sampling_rate": record.sampling_rate,
            "units": "mV",
            "leads": leads,
            "patient": {"id": f"PTBXL-{hea.stem}"},
        }
        out.append(Study(f"{hea.stem}.json", json.dumps(doc).encode(), "ecg-json"))
    return out


def waveform_dicoms(n: int, offset: int = 0) -> list[Study]:
    """pydicom's 12-lead waveform test file ``n`` times, numbered from ``offset``, each with its own
    study/series/instance UIDs and patient id."""
    base = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    out = []
    for i in range(offset, offset + n):
        ds = base.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (f"2.25.9{i:04d}{j}77" for j in range(3))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"WAVE{i:04d}"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(Study(f"ecg-wave-{i:04d}.dcm", buffer.getvalue(), "ecg-dicom"))
    return out


def radiographs(nih_dir: Path, n: int) -> list[Study]:
    """The first ``n`` NIH chest films of ``nih_dir`` wrapped as DX DICOM, one study each."""
    pngs = sorted(nih_dir.rglob("*.png"))[:n]
    out = []
    for i, png in enumerate(pngs):
        ds = wrap_png_as_dicom(png, study_uid=f"2.25.8{i:04d}55")
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(Study(f"cxr-{png.stem}.dcm", buffer.getvalue(), "cxr"))
    return out

"""Helpers for the DICOM tests: dcmtk calls (storescu proposing each file's own transfer syntax),
NIH films wrapped as DX DICOM. The stand-in CXR reader is bench.standin_readers.StandInCxrReader; the
uvicorn-served app and polling are bench.county's UvicornThread and wait_for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from serving.ingest.dicom import encode

DCMTK = shutil.which("storescu") and shutil.which("echoscu")
needs_dcmtk = pytest.mark.peer("dcmtk")  # tests/conftest.py require_peer: a skip here, a failure under CI


def wrapped_nih(png: Path, **kwargs) -> bytes:
    from datasets.imaging import wrap_png_as_dicom

    return encode(wrap_png_as_dicom(png, **kwargs))


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def storescu(
    port: int, files: list[Path], calling: str = "DEMOSITE", called: str = "PREREAD"
) -> subprocess.CompletedProcess:
    """One storescu run per file (dcmtk's -R proposes one transfer syntax per SOP class, so two
    files of one class in different syntaxes need two associations); the last failure, else the last."""
    import pydicom

    results = []
    for path in files:
        try:
            syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        except Exception:
            syntax = ""
        # Propose the file's own compressed syntax (storescu would otherwise try to decompress).
        flag = STORESCU_PROPOSE.get(syntax, "-R")
        results.append(
            dcmtk(
                "storescu", "-v", flag, "-aet", calling, "-aec", called, "127.0.0.1", str(port), str(path), timeout=120
            )
        )
    failed = [r for r in results if r.returncode != 0]
    return (failed or results)[-1]

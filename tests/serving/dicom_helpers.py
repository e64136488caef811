"""Helpers for the DICOM tests: a fake CXR reader with the CxrPreReader contract, dcmtk calls,
a uvicorn-served in-process app, polling."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.read import HeatmapPixels, PreRead
from serving.ingest.dicom import encode

DCMTK = shutil.which("storescu") and shutil.which("echoscu")
needs_dcmtk = pytest.mark.peer("dcmtk")  # tests/conftest.py require_peer: a skip here, a failure under CI


class FakeCxrReader:
    """The CxrPreReader contract (read_batch → PreReads with findings, triage, heatmaps), without a
    network: for the parts of the DICOM path that do not depend on what the model says."""

    model = {"name": "cxr", "version": "0-test", "architecture": "fake", "demo": True}

    def __init__(self):
        self.calls = 0

    def read_batch(self, records) -> list[PreRead]:
        out = []
        for record in records:
            self.calls += 1
            pixels = np.asarray(record.pixels, dtype=np.float32)
            gray = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
            overlay = np.stack([gray, gray // 2, gray // 3], axis=-1)
            p = float(np.clip(pixels.mean(), 0.05, 0.95))
            out.append(
                PreRead.model_validate(
                    {
                        "modality": "CXR",
                        "preliminary": True,
                        "model": dict(self.model),
                        "disclaimer": "test",
                        "findings": [
                            {
                                "code": "PNEUMONIA",
                                "name": "Pneumonia",
                                "probability": p,
                                "threshold": 0.3,
                                "positive": p >= 0.3,
                            },
                            {
                                "code": "EFFUSION",
                                "name": "Pleural effusion",
                                "probability": 0.1,
                                "threshold": 0.5,
                                "positive": False,
                            },
                        ],
                        "triage": {"level": "urgent" if p >= 0.3 else "routine", "score": p, "reasons": ["fake"]},
                        "heatmaps": [{"code": "PNEUMONIA", "name": "Pneumonia", "shape": [8, 8]}],
                        "pixels": {"PNEUMONIA": HeatmapPixels(np.zeros((8, 8), np.float32), overlay)},
                    }
                )
            )
        return out


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


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class UvicornThread:
    """Serve an ASGI app on a real port (dicomweb-client speaks HTTP, not ASGI)."""

    def __init__(self, app, port: int):
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, 30, 0.05, "uvicorn to start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)

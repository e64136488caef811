"""Stand-in readers: the EcgPreReader and CxrPreReader contracts (``read_batch`` → PreReads) without
a model or a network, for runs where what the model says is not what is measured or checked — the
sender benchmark's county (bench/county.py) and the service's tests of ingest, dispatch and results.
Their reads are deterministic functions of the input and say they come from no model."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from datasets.vocabulary.ecg_measurements import EcgMeasurement
from models.read import HeatmapPixels, PreRead


class StandInEcgReader:
    """The EcgPreReader contract without a network: a read whose quality and level follow a digest
    of the signals (1 in 7 "repeat the ECG", 1 in 7 critical), so notifications can be checked."""

    model: ClassVar[dict[str, Any]] = {"name": "ecg", "version": "0-test", "architecture": "fake", "demo": True}

    def read_batch(self, items) -> list[PreRead]:
        return [self.read(np.asarray(item.signals, dtype=np.float32)) for item in items]

    def read(self, signals: np.ndarray) -> PreRead:
        bucket = int(hashlib.sha256(signals.tobytes()).hexdigest(), 16) % 7
        acceptable = bucket != 0
        level = "critical" if bucket == 1 else "routine"
        return PreRead.model_validate(
            {
                "modality": "ECG",
                "preliminary": True,
                "model": dict(self.model),
                "disclaimer": "test stand-in, not a model",
                "findings": [
                    {
                        "code": "MI",
                        "name": "Myocardial infarction",
                        "probability": 0.9 if level == "critical" else 0.1,
                        "threshold": 0.5,
                        "positive": level == "critical",
                    }
                ],
                "measurements": {EcgMeasurement.HEART_RATE: 70.0},
                "quality": {
                    "acceptable": acceptable,
                    "reasons": []
                    if acceptable
                    else [{"code": "ecg_noisy_lead", "text": "leads too noisy", "leads": ["V1"]}],
                    "action": None if acceptable else "repeat the ECG",
                },
                "triage": {"level": level, "score": 0.9 if level == "critical" else 0.2, "reasons": ["fake"]},
            }
        )


class StandInCxrReader:
    """The CxrPreReader contract (read_batch → PreReads with findings, triage, heatmaps), without a
    network: for the parts of the DICOM path that do not depend on what the model says. ``calls``
    counts the images read (tests check that a study was read once)."""

    model: ClassVar[dict[str, Any]] = {"name": "cxr", "version": "0-test", "architecture": "fake", "demo": True}

    def __init__(self):
        self.calls = 0

    def read_batch(self, records) -> list[PreRead]:
        out = []
        for record in records:
            self.calls += 1
            out.append(self.read(np.asarray(record.pixels, dtype=np.float32)))
        return out

    def read(self, pixels: np.ndarray) -> PreRead:
        """Pneumonia's probability is the image's mean brightness (clipped to 0.05–0.95)."""
        gray = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        overlay = np.stack([gray, gray // 2, gray // 3], axis=-1)
        p = float(np.clip(pixels.mean(), 0.05, 0.95))
        return PreRead.model_validate(
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

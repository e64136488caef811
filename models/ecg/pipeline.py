"""The ECG pre-read: standard-lead signals → network probabilities + measurements + triage.

This is the whole read of one ECG, runnable in a notebook, a test, a benchmark or a Ray Serve
replica (serving/ wraps it, it does not re-implement it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datasets.ecg.measure import measure
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.transforms import preprocess_signals
from models.backends import InferenceBackend, load_backend
from models.card import ModelCard
from models.ecg.factory import build_ecg_network
from models.read import PreRead
from models.registry import Registry, open_registry
from models.triage import TriageRules, triage

DISCLAIMER = "Preliminary AI read. Not a diagnosis: a doctor must confirm or correct it."


@dataclass
class EcgInput:
    """One ECG ready for reading: signals (12 × n, mV) in STANDARD_LEADS order at ``sampling_rate``;
    ``site``, the sending site, picks its own operating points when the card has them."""

    signals: np.ndarray
    sampling_rate: float
    site: str | None = None


class EcgPreReader:
    def __init__(self, backend: InferenceBackend, card: ModelCard, rules: TriageRules):
        rules.require_labels(list(card.labels), f"model {card.name}/{card.version}")
        self.backend, self.card, self.rules = backend, card, rules
        self.labels = list(card.labels)
        names = card.label_names or card.labels
        self.label_names = dict(zip(card.labels, names))

    @classmethod
    def from_registry(cls, registry: Registry | str | Path, ref: str, triage_rules: str | Path,
                      backend: str = "onnxruntime", **backend_options: Any) -> "EcgPreReader":
        """Load ``ref`` (``ecg@champion``, ``ecg/3`` ...) from ``registry`` — a Registry or a
        location: a folder, an MLflow URI (see models.registry.open_registry)."""
        registered = open_registry(registry).resolve(ref)
        card = registered.card
        card.version = registered.version
        return cls(load_backend(Path(registered.path), backend, build_network=build_ecg_network, **backend_options), card,
                   TriageRules.from_yaml(triage_rules))

    @property
    def model_identity(self) -> dict[str, Any]:
        return {
            "name": self.card.name, "version": self.card.version, "architecture": self.card.architecture,
            "backend": self.backend.name, "demo": self.card.demo, "intended_use": self.card.intended_use,
        }

    def preprocess(self, item: EcgInput) -> np.ndarray:
        return preprocess_signals(item.signals, item.sampling_rate)

    def read_batch(self, items: Sequence[EcgInput]) -> list[PreRead]:
        """Read a batch: one network call for all, then measurements and triage per ECG."""
        started = time.perf_counter()
        batch = np.stack([self.preprocess(item) for item in items]).astype(np.float32, copy=False)
        probabilities = self.backend.predict(batch)
        model_ms = (time.perf_counter() - started) * 1000.0
        reads = []
        for item, probs in zip(items, probabilities):
            measurements = measure(EcgRecord(np.asarray(item.signals), STANDARD_LEADS, item.sampling_rate))
            reads.append(self._read(probs, measurements, model_ms, len(items), item.site))
        return reads

    def _read(self, probs: np.ndarray, measurements: dict, model_ms: float, batch_size: int,
              site: str | None = None) -> PreRead:
        by_code = {code: float(p) for code, p in zip(self.labels, probs)}
        thresholds, site_point = self.card.thresholds_for_site(site)
        findings = [
            {"code": code, "name": self.label_names[code], "probability": round(p, 4),
             "threshold": thresholds[code], "positive": p >= thresholds[code]}
            for code, p in by_code.items()
        ]
        result = triage(by_code, measurements, self.rules)
        return PreRead.model_validate({
            "modality": "ECG",
            "preliminary": True,
            "disclaimer": DISCLAIMER,
            "model": self.model_identity,
            "findings": findings,
            "operating_point": site_point or {"site": None, "source": "model card"},
            "measurements": measurements,
            "triage": result.model_dump(),
            "timing": {"batch_model_ms": round(model_ms, 2), "batch_size": batch_size},
        })

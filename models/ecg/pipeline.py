"""The ECG pre-read: standard-lead signals → measurements, quality, network probabilities, statements,
triage: one :class:`models.read.PreRead` per ECG.

Order matters and is the cart's: measure first (one vectorised pass, datasets/ecg/measure), judge the
quality on the same arrays (datasets/ecg/quality), and only for a readable ECG make statements from
their definitions and reconcile the network's findings with them (models/ecg/statements); then triage.
An unreadable ECG gets "Repeat the ECG: …", no statements, no positive finding and no findings-driven
level. Only findings the card says were learned from real ECGs (``ModelCard.drives_level``; a model
trained on synthetic ECGs has none) feed the triage level and score; every finding is still shown, with
its ``drives_level`` flag, and the measurement and statement rules of the triage apply whatever the card.
This is the whole read of one ECG, runnable in a notebook, a test, a benchmark or a Ray Serve replica
(serving/ wraps it, it does not re-implement it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.ecg.measure import EcgMeasurements, measure
from datasets.ecg.quality import QualityVerdict, assess_quality
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.transforms import preprocess_signals
from models.backends import InferenceBackend, load_backend
from models.card import ModelCard
from models.ecg.factory import build_ecg_network
from models.ecg.fusion import FusionHead
from models.ecg.statements import Patient, interpret, reconcile
from models.read import Finding, OperatingPoint, PreRead, Quality, QualityIssue, Triage
from models.registry import Registry, open_registry
from models.triage import TriageRules, triage

DISCLAIMER = "Preliminary AI read. Not a diagnosis: a doctor must confirm or correct it."

# Measurements run in a small thread pool: the filtering and sorting release the GIL, so a batch
# measures on both cores while the network's own threads are idle.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ecg-measure")


@dataclass
class EcgInput:
    """One ECG ready for reading: signals (12 × n, mV) in STANDARD_LEADS order at ``sampling_rate``;
    ``site``, the sending site, picks its own operating points when the card has them; ``patient``
    (``sex`` "M"/"F", ``age`` in years) sets the sex-specific limits (ST elevation in V2–V3, QTc,
    Cornell)."""

    signals: np.ndarray
    sampling_rate: float
    site: str | None = None
    patient: dict[str, Any] = field(default_factory=dict)


def _patient(raw: dict[str, Any]) -> Patient:
    sex = str(raw.get("sex") or "").strip().upper()[:1] or None
    try:
        age = float(raw["age"]) if raw.get("age") is not None else None
    except (TypeError, ValueError):
        age = None
    return Patient(sex=sex if sex in ("M", "F") else None, age=age)


def measure_and_check(item: EcgInput) -> tuple[EcgMeasurements, QualityVerdict]:
    """The measurement suite and the quality verdict of one ECG (the CPU-heavy half of a read)."""
    record = EcgRecord(np.asarray(item.signals), STANDARD_LEADS, item.sampling_rate)
    measured = measure(record)
    verdict = assess_quality(measured, record.duration_s)
    measured.analysis = None  # the arrays are not needed past the quality check
    return measured, verdict


class EcgPreReader:
    def __init__(self, backend: InferenceBackend, card: ModelCard, rules: TriageRules):
        rules.require_labels(list(card.labels), f"model {card.name}/{card.version}")
        self.backend, self.card, self.rules = backend, card, rules
        self.labels = list(card.labels)
        names = card.label_names or card.labels
        self.label_names = dict(zip(card.labels, names))
        # The default model's findings combine the network with the measurements (models/ecg/fusion.py).
        self.fusion = FusionHead.model_validate(card.fusion) if card.fusion else None

    @classmethod
    def from_registry(
        cls,
        registry: Registry | str | Path,
        ref: str,
        triage_rules: str | Path,
        backend: str = "onnxruntime",
        **backend_options: Any,
    ) -> EcgPreReader:
        """Load ``ref`` (``ecg@champion``, ``ecg/3`` ...) from ``registry`` — a Registry or a
        location: a folder, an MLflow URI (see models.registry.open_registry)."""
        registered = open_registry(registry).resolve(ref)
        card = registered.card
        card.version = registered.version
        return cls(
            load_backend(Path(registered.path), backend, build_network=build_ecg_network, **backend_options),
            card,
            TriageRules.from_yaml(triage_rules),
        )

    @property
    def model_identity(self) -> dict[str, Any]:
        return self.card.identity(self.backend.name)

    def preprocess(self, item: EcgInput) -> np.ndarray:
        return preprocess_signals(item.signals, item.sampling_rate)

    def read_batch(self, items: Sequence[EcgInput]) -> list[PreRead]:
        """Read a batch: measurements (two threads) beside one network call for all, then per ECG
        quality, statements, findings and triage."""
        if not items:
            return []
        measured = _POOL.map(measure_and_check, items)
        started = time.perf_counter()
        batch = np.stack([self.preprocess(item) for item in items]).astype(np.float32, copy=False)
        probabilities = self.backend.predict(batch)
        model_ms = (time.perf_counter() - started) * 1000.0
        if self.fusion is not None:
            measured = list(measured)
            probabilities = self.fusion.apply(probabilities, [m for m, _ in measured])
        return [
            self._read(item, probs, m, verdict, model_ms, len(items))
            for item, probs, (m, verdict) in zip(items, probabilities, measured)
        ]

    def _findings(self, probs: np.ndarray, thresholds: dict[str, float]) -> list[Finding]:
        return [
            Finding(
                code=code,
                name=self.label_names[code],
                probability=round(float(p), 4),
                threshold=thresholds[code],
                positive=bool(p >= thresholds[code]),
                # shown either way; only a finding learned from real ECGs may set the level (as for CXR)
                drives_level=self.card.drives_level(code),
            )
            for code, p in zip(self.labels, probs)
        ]

    def _read(
        self,
        item: EcgInput,
        probs: np.ndarray,
        m: EcgMeasurements,
        verdict: QualityVerdict,
        model_ms: float,
        batch_size: int,
    ) -> PreRead:
        thresholds, site_point = self.card.thresholds_for_site(item.site)
        findings = self._findings(probs, thresholds)
        quality = Quality(
            acceptable=verdict.acceptable,
            action=verdict.action,
            reasons=[QualityIssue(code=p.code, text=p.text, leads=p.leads) for p in verdict.problems],
        )
        statements = []
        if verdict.acceptable:
            network = {f.code: f.probability for f in findings}
            statements = interpret(m, network, thresholds, _patient(item.patient))
            findings = reconcile(findings, statements)
        else:  # nothing is inferred from an ECG that cannot be read; the numbers stay visible
            findings = [f.model_copy(update={"positive": False, "drives_level": False}) for f in findings]
        weighted = {f.code: f.probability if f.positive and f.drives_level else 0.0 for f in findings}
        result = triage(
            weighted,
            m.values,
            self.rules,
            statements={s.code for s in statements},
            unreadable=None if verdict.acceptable else verdict.action,
        )
        point = OperatingPoint(source="model card", detail={"thresholds": thresholds})
        if site_point:  # the site's own validated thresholds replaced some of the card's
            point = OperatingPoint.model_validate({**site_point, "detail": {"thresholds": thresholds}})
        return PreRead(
            modality="ECG",
            disclaimer=DISCLAIMER,
            model=self.model_identity,
            findings=findings,
            operating_point=point,
            measurements=dict(m.values),
            lead_measurements=m.leads,
            statements=statements,
            quality=quality,
            triage=Triage(level=result.level, score=result.score, reasons=result.reasons),
            source={"measurement_method": m.method, **({"measurement_error": m.error} if m.error else {})},
            timing={"batch_model_ms": round(model_ms, 2), "batch_size": batch_size},
        )

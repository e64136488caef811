"""The pre-read: what a pre-reader returns for one study, and what the store, the SR/SC/FHIR
builders, the API, the web page and the printed report consume.

One typed object for both modalities (``PreRead``) instead of dicts read as
``read["triage"]["level"]``. Field names follow ../shared/INTERFACES.md ("The read"). It is stored as
its JSON (``PreRead.model_dump(mode="json")``) and read back with ``PreRead.model_validate``; old
stored reads (before a field existed) still validate because every later field has a default.

Codes (finding codes, statement codes, quality reason codes) never change with the locale; the
human-readable ``name``/``text`` fields are in the locale the read was made or rendered in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datasets.vocabulary import QualityReason, TriageLevel


class _Model(BaseModel):
    # Unknown keys are refused: a misspelt field must fail in a test, not vanish from a report.
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class ModelIdentity(_Model):
    """Which registered model made the read (shown beside every read; the SR's device observer)."""

    name: str
    version: str | int | None = None
    architecture: str | None = None
    backend: str | None = None
    demo: bool = False
    intended_use: str | None = None


class OperatingPoint(_Model):
    """Where the thresholds came from: the model card's validation operating point, or a site's own."""

    site: str | None = None
    source: str = "model card"
    # Extra detail a card can carry (validation sensitivity/specificity, the data it was chosen on).
    detail: dict[str, Any] = Field(default_factory=dict)
    # A site's own operating points: the labels they replace and when they were computed.
    labels: list[str] = Field(default_factory=list)
    computed_at: str | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _named_source(cls, value: Any) -> Any:
        return "site operating point" if value is None else value


class Finding(_Model):
    """One label of the model (or a rule) with its probability and the threshold it was called at."""

    code: str
    name: str
    probability: float
    threshold: float
    positive: bool
    # False for a finding the model never learned from real data (e.g. phantoms only): shown, but it
    # never drives a triage level.
    drives_level: bool = True


class Statement(_Model):
    """An interpretive statement a doctor recognises (``sinus tachycardia``, ``1st-degree AV block``),
    with the evidence that triggered it (measurements, leads, the network's probability)."""

    code: str
    name: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    # "rule" (from its definition on the measurements), "network", or "rule+network".
    source: str = "rule"


class QualityIssue(_Model):
    """One reason a study failed (or nearly failed) its acceptance check."""

    code: QualityReason
    text: str
    leads: list[str] = Field(default_factory=list)


class Quality(_Model):
    """The verdict before interpretation: an unacceptable study gets no level from its findings and
    says what to do (e.g. repeat the ECG)."""

    acceptable: bool = True
    reasons: list[QualityIssue] = Field(default_factory=list)
    action: str | None = None


class Triage(_Model):
    level: TriageLevel
    score: float = Field(ge=0.0, le=1.0)
    reasons: list[str] = Field(default_factory=list)


class PriorComparison(_Model):
    """The earlier study of the same patient and kind that this read was compared with."""

    study_uid: str
    date: str | None = None
    deltas: dict[str, float | None] = Field(default_factory=dict)
    new_statements: list[str] = Field(default_factory=list)
    resolved_statements: list[str] = Field(default_factory=list)
    text: str | None = None


class HeatmapRef(_Model):
    """A Grad-CAM heatmap of one finding; the pixels travel separately (never in the JSON)."""

    code: str
    name: str
    probability: float | None = None
    # (rows, columns) of the heatmap, in the original image's geometry.
    shape: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class HeatmapPixels:
    """The pictures of one heatmap, kept beside the read (``PreRead.pixels``), never in its JSON:
    they are stored as the Secondary Capture the results room makes of them."""

    heatmap: np.ndarray
    """float32 [rows, cols] in [0, 1], in the original image's geometry."""
    overlay_rgb: np.ndarray
    """uint8 [rows, cols, 3]: the heatmap blended over the image, as a reader sees it."""


class PreRead(_Model):
    """A preliminary AI read of one study: ECG or chest X-ray."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, arbitrary_types_allowed=True)

    modality: Literal["ECG", "CXR"]
    preliminary: bool = True
    disclaimer: str
    model: ModelIdentity
    findings: list[Finding] = Field(default_factory=list)
    operating_point: OperatingPoint = Field(default_factory=OperatingPoint)
    # Named numbers (ECG: heart_rate_bpm, pr_interval_ms, qrs_duration_ms, qtc_bazett_ms, axes ...);
    # per-lead values live under ``lead_measurements``. Values are numbers, or None when not measured.
    measurements: dict[str, Any] = Field(default_factory=dict)
    lead_measurements: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    statements: list[Statement] = Field(default_factory=list)
    quality: Quality = Field(default_factory=Quality)
    triage: Triage
    prior: PriorComparison | None = None
    heatmaps: list[HeatmapRef] = Field(default_factory=list)
    source: dict[str, Any] = Field(default_factory=dict)
    # What the sending machine (an ECG cart) measured and said itself, shown beside ours.
    machine: dict[str, Any] | None = None
    timing: dict[str, Any] = Field(default_factory=dict)
    locale: str = "en"
    # The result objects stored for this read (role → SOP Instance UID, series UID, WADO-RS link).
    results: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Heatmap pictures by finding code: travel with the object (a replica → the ingress), never in JSON.
    pixels: dict[str, HeatmapPixels] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def level(self) -> TriageLevel:
        return self.triage.level

    def positive_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.positive]

    def to_json(self) -> dict[str, Any]:
        """The stored and returned JSON."""
        return self.model_dump(mode="json")

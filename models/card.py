"""Model cards: what a registered model is, what it expects, what it was trained on, how it did.

A card travels with the weights (``card.json`` beside ``model.onnx``) and is what serving reads to
know the label order, the decision thresholds and the preprocessing to apply, and what the
worklist shows as the model's identity (name, version, demo flag, intended use).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

CARD_FILENAME = "card.json"
SITE_THRESHOLDS_KEY = "site_thresholds"  # card.metrics: per-site operating points (evaluation/thresholds.py)
DEMO_ECG_INTENDED_USE = "DEMO model trained on synthetic ECGs simulated with neurokit2. Not for clinical use."


class InputSpec(BaseModel):
    """The tensor a model takes and the pipeline that produces it from a raw study."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int | None] = Field(description="input tensor shape; None marks the dynamic batch axis")
    dtype: str = "float32"
    sampling_rate: float | None = Field(default=None, description="Hz, for waveforms")
    window_s: float | None = Field(default=None, description="seconds per input window, for waveforms")
    preprocessing: str = Field(description="name of the pipeline function, e.g. datasets.ecg.transforms.ecg_preprocess")
    preprocessing_params: dict[str, Any] = Field(default_factory=dict)


class TrainingData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    source: str | None = None
    n_train: int
    n_val: int
    n_test: int | None = None
    fingerprint_sha256: str = Field(description="sha256 over the training arrays (or record ids) the model saw")


class TrackingRun(BaseModel):
    """The experiment-tracking (MLflow) run that trained a model: its parameters, curves and logs."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    experiment_id: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = Field(default=None, description="where the run is (never with a password)")


def framework_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour a model's numbers depend on."""
    versions = {"python": platform.python_version()}
    for module in ("torch", "numpy", "onnx", "onnxruntime", "neurokit2", "sklearn"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - an absent optional library is simply not recorded
            continue
    return versions


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: int | None = Field(default=None, description="set by the registry on registration")
    task: Literal["ecg", "cxr"]
    architecture: str
    architecture_params: dict[str, Any] = Field(default_factory=dict, description="kwargs to rebuild the network")
    labels: list[str] = Field(description="label codes, in the order of the model's outputs")
    label_names: list[str]
    thresholds: dict[str, float] = Field(default_factory=dict, description="decision threshold per label code")
    input: InputSpec
    training_data: TrainingData
    metrics: dict[str, Any] = Field(default_factory=dict)
    demo: bool = False
    intended_use: str
    framework: dict[str, str] = Field(default_factory=framework_versions)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    training_run: TrackingRun | None = Field(default=None, description="the tracked run that produced the model")
    learned_from_real: dict[str, bool] = Field(
        default_factory=dict,
        description="label code → True when real training data held both positives and negatives "
        "of it; False: learned from phantoms/synthetic data only, or never seen positive. Empty (older cards): "
        "every label counts as learned",
    )
    fusion: dict[str, Any] | None = Field(
        default=None,
        description="models.ecg.fusion.FusionHead: how the network's outputs are combined with the "
        "measurements at read time (None: the network's probabilities are the read's)",
    )

    def drives_level(self, code: str) -> bool:
        """Whether a finding may set a triage level: only labels learned from real data do."""
        return self.learned_from_real.get(code, False) if self.learned_from_real else True

    @model_validator(mode="after")
    def _consistent_labels(self) -> ModelCard:
        if len(self.labels) != len(self.label_names):
            raise ValueError(f"{len(self.labels)} labels but {len(self.label_names)} label names")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("duplicate label codes")
        unknown = set(self.thresholds) - set(self.labels)
        if unknown:
            raise ValueError(f"thresholds for unknown labels: {sorted(unknown)}")
        for code in self.labels:  # a missing threshold means the neutral 0.5
            self.thresholds.setdefault(code, 0.5)
        for code, value in self.thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold for {code} must be in [0, 1], got {value}")
        return self

    def read_identity(self, backend: str) -> dict[str, Any]:
        """Who made a read with this model on ``backend``: a read's ``model`` (models.read.ModelIdentity)."""
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "backend": backend,
            "demo": self.demo,
            "intended_use": self.intended_use,
        }

    def thresholds_for_site(self, site: str | None) -> tuple[dict[str, float], dict[str, Any] | None]:
        """Decision thresholds for a study sent by ``site``: the card's, replaced label by label by
        that site's own operating points where an evaluation chose one (`preread evaluate
        --site-sensitivity T --write-site-thresholds`: local calibration, as WHO advises for CAD
        software). Returns (thresholds, the operating point's provenance, or None when the card's
        global thresholds apply to every label)."""
        chosen = ((self.metrics.get(SITE_THRESHOLDS_KEY) or {}).get("sites") or {}).get(site) if site else None
        thresholds = dict(self.thresholds)
        applied = {}
        for code, point in (chosen or {}).items():
            value = point.get("threshold") if isinstance(point, dict) else None
            if code in thresholds and value is not None and 0.0 <= float(value) <= 1.0:
                thresholds[code] = applied[code] = float(value)
        if not applied:
            return thresholds, None
        entry = self.metrics[SITE_THRESHOLDS_KEY]
        return thresholds, {
            "site": site,
            "labels": sorted(applied),
            "source": entry.get("source"),
            "computed_at": entry.get("computed_at"),
        }

    def threshold_vector(self) -> np.ndarray:
        """Thresholds as float32 [L] in output order."""
        return np.array([self.thresholds[code] for code in self.labels], dtype=np.float32)

    def save(self, path: str | Path) -> Path:
        """Write as JSON. ``path`` may be the file or its directory (→ DIR/card.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' dtypes, shapes and bytes: identifies exactly what a model saw."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def fingerprint_ids(ids: list[str]) -> str:
    """sha256 over sorted record identifiers (for datasets too large to hash byte by byte)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()

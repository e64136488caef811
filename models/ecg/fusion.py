"""What the measurements know, combined with what the network sees: the default ECG model's last stage.

With a few hundred real training ECGs a network alone is weak (the PTB-XL benchmark's 0.93 macro-AUROC
needs 17,000 records), while the measurement suite's numbers (``datasets.ecg.measure``: intervals,
axes, per-lead Q/R/S/ST/T amplitudes, voltage criteria) carry much of what defines MI, ST/T change,
conduction disturbance and hypertrophy. So each finding's probability is

    p = sigmoid(w · logit_network + (1 − w) · logit_measurements)

where ``logit_measurements`` is a logistic regression on the standardised measurement features
(fitted on the training folds) and ``w`` (per finding, 0 … 1) was chosen on the validation fold. The
head is a handful of numbers kept in the model card (``ModelCard.fusion``) and applied with numpy
at read time on the measurements the read makes anyway: nothing else is measured twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datasets.vocabulary.ecg_measurements import AXIS_MEASUREMENTS, EcgMeasurement

__all__ = ["FusionHead", "feature_names", "feature_vector", "logit"]

STD_CLIP = 5.0  # standardised features beyond ±5 SD are clipped: one wild measurement cannot dominate
# Global measurement keys used as features when the suite provides them (others are bookkeeping).
# The order is part of every trained head (its feature list was fixed from it): tests/models pin it.
GLOBAL_FEATURES: tuple[str, ...] = tuple(
    key.value
    for key in (
        EcgMeasurement.HEART_RATE,
        EcgMeasurement.RR_SD,
        EcgMeasurement.RR_IRREGULARITY,
        EcgMeasurement.RR_SUCCESSIVE_IRREGULARITY,
        EcgMeasurement.PR_INTERVAL,
        EcgMeasurement.P_DURATION,
        EcgMeasurement.QRS_DURATION,
        EcgMeasurement.QT_INTERVAL,
        EcgMeasurement.QTC_BAZETT,
        EcgMeasurement.QTC_FRIDERICIA,
        EcgMeasurement.SOKOLOW_LYON,
        EcgMeasurement.CORNELL,
        EcgMeasurement.QRS_LIMB_MAX,
        EcgMeasurement.QRS_PRECORDIAL_MAX,
        EcgMeasurement.P_WAVE_CONSISTENCY,
    )
)
# Axes enter as (cos, sin): -179° and +179° are neighbours, not opposites.
AXIS_FEATURES = AXIS_MEASUREMENTS


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _parts(measured: Any) -> tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
    """(global values, per-lead values) of an EcgMeasurements, or of a plain dict of global values."""
    if hasattr(measured, "values") and isinstance(measured.values, Mapping):
        return measured.values, getattr(measured, "leads", {}) or {}
    return measured or {}, {}


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def feature_names(measured: Any) -> list[str]:
    """The feature names one measurement result offers (used once, at training, to fix the list)."""
    values, leads = _parts(measured)
    names = [key for key in GLOBAL_FEATURES if key in values]
    names += [f"{key}_{part}" for key in AXIS_FEATURES if key in values for part in ("cos", "sin")]
    names += [f"{lead}.{key}" for lead, keys in leads.items() for key in keys]
    return names


def feature_vector(measured: Any, names: Sequence[str]) -> np.ndarray:
    """The named features of one measurement result (NaN where not measured)."""
    values, leads = _parts(measured)
    out = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        if "." in name:
            lead, key = name.split(".", 1)
            out[i] = _number((leads.get(lead) or {}).get(key))
        elif name.endswith(("_cos", "_sin")) and name[:-4] in AXIS_FEATURES:
            angle = math.radians(_number(values.get(name[:-4])))
            out[i] = math.cos(angle) if name.endswith("_cos") else math.sin(angle)
        else:
            out[i] = _number(values.get(name))
    return out


class FusionHead(BaseModel):
    """The fitted combination, as stored in the model card (plain numbers, JSON)."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str]
    features: list[str]
    fill: list[float] = Field(description="per feature: the training median, used where a value is missing")
    mean: list[float]
    scale: list[float]
    coef: list[list[float]] = Field(description="[label][feature] logistic-regression weights")
    intercept: list[float]
    network_weight: list[float] = Field(description="per label: w in w·logit_net + (1-w)·logit_meas")

    @model_validator(mode="after")
    def _shapes(self) -> FusionHead:
        n_labels, n_features = len(self.labels), len(self.features)
        if not (len(self.fill) == len(self.mean) == len(self.scale) == n_features):
            raise ValueError("fill/mean/scale must have one value per feature")
        if len(self.coef) != n_labels or any(len(row) != n_features for row in self.coef):
            raise ValueError("coef must be [labels][features]")
        if len(self.intercept) != n_labels or len(self.network_weight) != n_labels:
            raise ValueError("intercept and network_weight need one value per label")
        return self

    def standardise(self, F: np.ndarray) -> np.ndarray:
        F = np.where(np.isnan(F), np.asarray(self.fill), F)
        return np.clip((F - np.asarray(self.mean)) / np.asarray(self.scale), -STD_CLIP, STD_CLIP)

    def measurement_logits(self, F: np.ndarray) -> np.ndarray:
        """[n, labels] logits of the measurement model for raw feature rows F [n, features]."""
        return self.standardise(np.atleast_2d(F)) @ np.asarray(self.coef).T + np.asarray(self.intercept)

    def combine(self, network_probs: np.ndarray, F: np.ndarray) -> np.ndarray:
        """Fused probabilities [n, labels] from the network's [n, labels] and feature rows [n, features]."""
        w = np.asarray(self.network_weight)
        z = w * logit(np.atleast_2d(network_probs)) + (1.0 - w) * self.measurement_logits(F)
        return 1.0 / (1.0 + np.exp(-z))

    def apply(self, network_probs: np.ndarray, measured: Sequence[Any]) -> np.ndarray:
        """What the read uses: network probabilities [n, labels] and each ECG's measurements."""
        F = (
            np.stack([feature_vector(m, self.features) for m in measured])
            if len(measured)
            else np.zeros((0, len(self.features)))
        )
        return self.combine(network_probs, F)

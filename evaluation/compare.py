"""Champion vs challenger on identical cases, and the promotion gate.

``compare_models`` runs a paired stratified bootstrap (the same resampled cases for both models) of
the per-label AUROC difference and sensitivities; DeLong's test for correlated AUROCs is added as
a second opinion. ``gate_decision`` applies configs/gate.yaml; ``record_gate`` stores the decision
and its evidence with the challenger's version in the registry (``gate.json`` beside the version's
files and ``card.metrics["gate"]``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import norm, rankdata

from evaluation.bootstrap import bootstrap, strata_from_labels
from evaluation.metrics import auroc, threshold_metrics
from models.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GATE_CONFIG = REPO / "configs" / "gate.yaml"
GATE_FILENAME = "gate.json"


@dataclass
class GateConfig:
    max_auroc_drop: float = 0.01
    confidence: float = 0.95
    rule: str = "noninferiority"
    n_boot: int = 1000
    seed: int = 0
    sensitivity_tolerance: float = 0.0
    critical_findings: dict[str, list[str]] = field(default_factory=dict)
    min_cases_per_class: int = 1
    undefined_labels: str = "skip"

    def __post_init__(self):
        if self.rule not in ("noninferiority", "significant_drop"):
            raise ValueError(f"gate rule must be noninferiority or significant_drop, got {self.rule!r}")
        if self.undefined_labels not in ("skip", "block"):
            raise ValueError(f"undefined_labels must be skip or block, got {self.undefined_labels!r}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")


def load_gate_config(path: str | Path | None = None, **overrides) -> GateConfig:
    path = Path(path) if path else DEFAULT_GATE_CONFIG
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    unknown = set(data or {}) - set(GateConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown gate settings {sorted(unknown)}")
    data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return GateConfig(**data)


# --------------------------------------------------------------------------------------------------
# DeLong (Sun & Xu 2014 fast algorithm) for two correlated AUROCs


def _midrank(x: np.ndarray) -> np.ndarray:
    return rankdata(x)


def delong_paired(y, s1, s2) -> dict[str, float]:
    """AUROC difference s2 − s1, its DeLong standard error and two-sided p-value."""
    y = np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y)
    y = y[keep] > 0.5
    s = np.vstack([np.asarray(s1, dtype=np.float64)[keep], np.asarray(s2, dtype=np.float64)[keep]])
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return {"delta": float("nan"), "se": float("nan"), "p_value": float("nan")}
    pos, neg = s[:, y], s[:, ~y]
    tx = np.vstack([_midrank(r) for r in pos])
    ty = np.vstack([_midrank(r) for r in neg])
    tz = np.vstack([_midrank(r) for r in s[:, np.r_[np.flatnonzero(y), np.flatnonzero(~y)]]])
    aucs = tz[:, :m].sum(axis=1) / m / n - (m + 1.0) / 2.0 / n
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    delta = aucs[1] - aucs[0]
    if var <= 0:
        return {"delta": float(delta), "se": 0.0, "p_value": 1.0 if delta == 0 else 0.0}
    se = float(np.sqrt(var))
    return {"delta": float(delta), "se": se, "p_value": float(2 * norm.sf(abs(delta) / se))}


# --------------------------------------------------------------------------------------------------


def compare_models(
    Y: np.ndarray,
    P_champion: np.ndarray,
    P_challenger: np.ndarray,
    labels: Sequence[str],
    thresholds_champion: dict[str, float],
    thresholds_challenger: dict[str, float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired stratified bootstrap of per-label AUROC (both models and their difference) and of the
    sensitivities at each model's own thresholds. Same cases, same resamples, for both models."""
    Y = np.asarray(Y, dtype=np.float64)
    P1, P2 = np.asarray(P_champion, dtype=np.float64), np.asarray(P_challenger, dtype=np.float64)
    if not (Y.shape == P1.shape == P2.shape):
        raise ValueError(f"labels {Y.shape}, champion {P1.shape}, challenger {P2.shape} must match (identical cases)")
    labels = list(labels)

    def statistic(index: np.ndarray) -> dict[str, float]:
        out = {}
        for j, code in enumerate(labels):
            y = Y[index, j]
            a1, a2 = auroc(y, P1[index, j], warn=False), auroc(y, P2[index, j], warn=False)
            out[f"{code}/auroc_champion"] = a1
            out[f"{code}/auroc_challenger"] = a2
            out[f"{code}/auroc_delta"] = a2 - a1
            s1 = threshold_metrics(y, P1[index, j], thresholds_champion[code])["sensitivity"]
            s2 = threshold_metrics(y, P2[index, j], thresholds_challenger[code])["sensitivity"]
            out[f"{code}/sens_champion"] = s1
            out[f"{code}/sens_challenger"] = s2
            out[f"{code}/sens_delta"] = s2 - s1
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap(statistic, len(Y), strata_from_labels(Y), n_boot=n_boot, alpha=alpha, seed=seed)
    per_label = {}
    for j, code in enumerate(labels):
        known = ~np.isnan(Y[:, j])
        per_label[code] = {
            "n": int(known.sum()),
            "n_pos": int((Y[known, j] > 0.5).sum()),
            **{key.split("/", 1)[1]: value for key, value in boot.items() if key.startswith(code + "/")},
            "delong": delong_paired(Y[:, j], P1[:, j], P2[:, j]),
        }
    return {"n_cases": int(len(Y)), "n_boot": n_boot, "alpha": alpha, "seed": seed, "per_label": per_label}


@dataclass
class GateResult:
    passed: bool
    reasons: list[str]
    checks: list[dict[str, Any]]
    config: dict[str, Any]
    comparison: dict[str, Any]
    champion: str | None = None
    challenger: str | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _auroc_check(code: str, entry: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    """One label's AUROC check: non-inferiority (or no significant drop) of the challenger, or
    what to do when the comparison set cannot define the label's AUROC."""
    delta = entry["auroc_delta"]
    n_neg = entry["n"] - entry["n_pos"]
    if min(entry["n_pos"], n_neg) < config.min_cases_per_class or np.isnan(delta["value"]):
        ok = config.undefined_labels == "skip"
        detail = f"AUROC undefined on the comparison set ({entry['n_pos']} positives, {n_neg} negatives)" + (
            "; skipped" if ok else "; blocked by undefined_labels=block"
        )
        reason = f"{code}: AUROC cannot be compared ({entry['n_pos']} positives)"
        return {"label": code, "check": "auroc", "passed": ok, "detail": detail, "reason": reason}
    if config.rule == "noninferiority":
        ok = delta["ci_low"] > -config.max_auroc_drop
        text = (
            f"ΔAUROC {delta['value']:+.4f} (95% CI {delta['ci_low']:+.4f} to {delta['ci_high']:+.4f}); "
            f"lower bound must exceed −{config.max_auroc_drop}"
        )
    else:
        ok = not delta["ci_high"] < -config.max_auroc_drop
        text = (
            f"ΔAUROC {delta['value']:+.4f} (CI {delta['ci_low']:+.4f} to {delta['ci_high']:+.4f}); "
            f"blocked if the upper bound is below −{config.max_auroc_drop}"
        )
    return {"label": code, "check": "auroc", "passed": bool(ok), "detail": text, "reason": f"{code}: {text}"}


def _sensitivity_check(code: str, entry: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    """A critical finding's check: the challenger's sensitivity may not fall below the champion's."""
    s1, s2 = entry["sens_champion"]["value"], entry["sens_challenger"]["value"]
    if np.isnan(s1) or np.isnan(s2):
        ok = config.undefined_labels == "skip"
        text = "sensitivity undefined (no positives)"
    else:
        ok = s2 >= s1 - config.sensitivity_tolerance - 1e-12
        text = f"critical finding sensitivity {s2:.3f} vs champion {s1:.3f}"
    return {
        "label": code,
        "check": "critical_sensitivity",
        "passed": bool(ok),
        "detail": text,
        "reason": f"{code}: {text}",
    }


def gate_decision(
    comparison: dict[str, Any],
    config: GateConfig,
    task: str | None = None,
    champion: str | None = None,
    challenger: str | None = None,
) -> GateResult:
    """Apply the gate to a ``compare_models`` result (computed with alpha = 1 − confidence)."""
    critical = set(config.critical_findings.get(task, [])) if task else set()
    checks: list[dict[str, Any]] = []
    for code, entry in comparison["per_label"].items():
        checks.append(_auroc_check(code, entry, config))
        if code in critical:
            checks.append(_sensitivity_check(code, entry, config))
    reasons = [check["reason"] for check in checks if not check["passed"]]
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        checks=[{k: v for k, v in check.items() if k != "reason"} for check in checks],
        config=asdict(config),
        comparison=jsonable(comparison),
        champion=champion,
        challenger=challenger,
    )


def jsonable(obj):
    """``obj`` as strict JSON: NumPy scalars → Python, NaN → None, arrays inside dicts left out."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not isinstance(v, np.ndarray)}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def record_gate(model, result: GateResult, registry=None) -> Path | str:
    """Store the decision with the challenger's version in ``registry``: the full evidence as
    gate.json (beside the version's files in a file registry; an artifact of the version's run in
    MLflow) and a summary in card.metrics["gate"] (the card file; a version tag in MLflow).
    ``model`` is a models.registry.RegisteredModel; without ``registry``, the file registry that
    holds ``model.path``. Returns where gate.json went."""
    if registry is None:
        registry = ModelRegistry(Path(model.path).parents[1])
    data = jsonable(result.to_dict())
    summary = {
        "passed": result.passed,
        "champion": result.champion,
        "decided_at": result.decided_at,
        "reasons": result.reasons,
        "evidence": GATE_FILENAME,
    }
    where = registry.annotate(
        model, metrics={"gate": summary}, files={GATE_FILENAME: json.dumps(data, indent=2) + "\n"}
    )
    location = where[GATE_FILENAME]
    return Path(location) if "://" not in location else location

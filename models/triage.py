"""Triage: model probabilities + measurements → a score in [0, 1] and a level.

The rules are configuration (configs/triage/*.yaml), not code, so a clinical lead can change
"a heart rate over 150 is critical" without a release. Hard rules can only *raise* a level:
whatever the network says, a measured heart rate of 30 bpm is read now.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datasets.vocabulary import LEVEL_RANK, TriageLevel
from datasets.vocabulary.ecg_measurements import EcgMeasurement
from datasets.vocabulary.ecg_statements import EcgStatement

Level = TriageLevel
LEVELS: tuple[TriageLevel, ...] = tuple(TriageLevel)

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class MeasurementRule(BaseModel):
    """E.g. ``{measurement: heart_rate_bpm, op: ">", value: 150, level: critical}``."""

    model_config = ConfigDict(extra="forbid")
    measurement: str
    op: Literal[">", ">=", "<", "<="]
    value: float
    level: Level
    reason: str | None = None
    # A second condition on another measurement (e.g. QTc > 500 only with a QRS under 120 ms).
    and_measurement: MeasurementRule | None = None

    def check(self, measurements: dict) -> str | None:
        value = measurements.get(self.measurement)
        if value is None or not _OPS[self.op](float(value), self.value):
            return None
        if self.and_measurement is not None and self.and_measurement.check(measurements) is None:
            return None
        return self.reason or f"{self.measurement} {float(value):.0f} {self.op} {self.value:g}"


class StatementRule(BaseModel):
    """E.g. ``{statement: st_elevation_stemi_criteria, level: critical}``: a statement made from its
    definition on the measurements (models/ecg/statements.py) raises the level; optional measurement
    condition (``af_rapid_ventricular_response`` only over 150 bpm ...)."""

    model_config = ConfigDict(extra="forbid")
    statement: str
    level: Level
    reason: str | None = None
    and_measurement: MeasurementRule | None = None

    def check(self, statements: set[str], measurements: dict) -> str | None:
        if self.statement not in statements:
            return None
        if self.and_measurement is not None and self.and_measurement.check(measurements) is None:
            return None
        return self.reason or self.statement.replace("_", " ")


class FindingRule(BaseModel):
    """E.g. ``{finding: STE, min_probability: 0.5, level: critical}``; optional measurement condition.

    ``at_operating_point: true`` instead of ``min_probability``: the rule fires when the finding is
    positive at the read's threshold (the model card's validation operating point, or the site's),
    so the level means what that operating point's validation sensitivity and specificity say."""

    model_config = ConfigDict(extra="forbid")
    finding: str
    min_probability: float | None = Field(None, ge=0, le=1)
    at_operating_point: bool = False
    level: Level
    reason: str | None = None
    and_measurement: MeasurementRule | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> FindingRule:
        if (self.min_probability is None) == (not self.at_operating_point):
            raise ValueError(
                f"finding rule for {self.finding}: give exactly one of min_probability or at_operating_point: true"
            )
        return self

    def check(
        self, probabilities: dict[str, float], measurements: dict, positive: dict[str, bool] | None = None
    ) -> str | None:
        p = probabilities.get(self.finding)
        if p is None:
            return None
        if self.at_operating_point:
            if not (positive or {}).get(self.finding, False):
                return None
            if self.and_measurement is not None and self.and_measurement.check(measurements) is None:
                return None
            return self.reason or f"{self.finding} positive at its operating point (probability {p:.2f})"
        if p < self.min_probability:
            return None
        if self.and_measurement is not None and self.and_measurement.check(measurements) is None:
            return None
        return self.reason or f"{self.finding} probability {p:.2f} ≥ {self.min_probability:g}"


class TriageRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: str
    # Score = max over findings of weight × probability: one severe finding is enough.
    finding_weights: dict[str, float]
    # Score cut-offs for levels when no hard rule fires.
    level_thresholds: dict[Literal["critical", "urgent"], float] = {"critical": 0.8, "urgent": 0.5}
    measurement_rules: list[MeasurementRule] = []
    finding_rules: list[FindingRule] = []
    # False: the score only orders studies; levels come from the rules alone (for models whose
    # probabilities are not calibrated, where a level must mean a validated operating point).
    score_sets_level: bool = True
    statement_rules: list[StatementRule] = []
    # The level of a study that failed its quality check (no findings-driven level; the reader sees
    # that a repeat is needed while the patient may still be at the clinic).
    unreadable_level: Level = "urgent"
    # Score floor given to a study a hard rule raised, so it sorts with its level.
    level_score_floor: dict[Level, float] = {"critical": 0.8, "urgent": 0.5, "routine": 0.0}

    @model_validator(mode="after")
    def _check(self) -> TriageRules:
        if not all(0.0 <= w <= 1.0 for w in self.finding_weights.values()):
            raise ValueError("finding_weights must lie in [0, 1]")
        if self.level_thresholds["critical"] < self.level_thresholds["urgent"]:
            raise ValueError("level_thresholds: critical must be ≥ urgent")
        if self.modality == "ECG":
            unknown = sorted(set(self.measurement_names()) - set(EcgMeasurement))
            if unknown:  # a typo would be a rule that never fires: the worst silent failure
                raise ValueError(f"unknown ECG measurement(s) {', '.join(unknown)}; known: {', '.join(EcgMeasurement)}")
            unknown = sorted({rule.statement for rule in self.statement_rules} - set(EcgStatement))
            if unknown:
                raise ValueError(f"unknown ECG statement(s) {', '.join(unknown)}; known: {', '.join(EcgStatement)}")
        return self

    def measurement_names(self) -> list[str]:
        """Every measurement a rule names, the ``and_measurement`` conditions of every rule kind included."""
        names = []
        rules: list[MeasurementRule | FindingRule | StatementRule] = [
            *self.measurement_rules,
            *self.finding_rules,
            *self.statement_rules,
        ]
        for rule in rules:
            condition = rule if isinstance(rule, MeasurementRule) else rule.and_measurement
            while condition is not None:
                names.append(condition.measurement)
                condition = condition.and_measurement
        return names

    def require_labels(self, labels: list[str], model: str = "the model") -> None:
        """Refuse a model whose labels these rules do not weigh. A label missing from
        ``finding_weights`` would silently count 0 toward priority, so a model trained on other
        labels (PTB-XL ``MI``, ``STTC``; SNOMED codes) would put every study in ``routine``: the
        worst failure a triage can have. Weighing a label 0 on purpose is fine."""
        missing = [code for code in labels if code not in self.finding_weights]
        if missing:
            raise ValueError(
                f"{model} predicts label(s) {', '.join(missing)} that the {self.modality} triage rules do not weigh; "
                "add each to finding_weights in the triage YAML (0 for a label that must not raise priority), "
                "or serve a model trained on the served label set (label_set: preread)"
            )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TriageRules:
        with open(path, encoding="utf-8") as fh:
            return cls.model_validate(yaml.safe_load(fh))


class TriageResult(BaseModel):
    level: Level
    score: float
    reasons: list[str]


def triage(
    probabilities: dict[str, float],
    measurements: dict,
    rules: TriageRules,
    positive: dict[str, bool] | None = None,
    statements: set[str] | None = None,
    unreadable: str | None = None,
) -> TriageResult:
    """Score and level from the findings that may drive a level (the caller leaves out the others:
    findings never learned from real data, and for ECGs those not positive at their operating
    point) and the measurements. ``positive`` (code → positive at its threshold) feeds the rules
    that fire at an operating point; ``statements`` the statement rules. ``unreadable``: the quality
    verdict's action when the study cannot be read; then no finding, statement or measurement sets
    the level."""
    if unreadable is not None:
        level_: Level = rules.unreadable_level
        return TriageResult(level=level_, score=rules.level_score_floor[level_], reasons=[unreadable])
    weighted = [(rules.finding_weights.get(code, 0.0) * float(p), code) for code, p in probabilities.items()]
    score, top = max(weighted, default=(0.0, None))
    if not rules.score_sets_level:
        level = "routine"
    elif score >= rules.level_thresholds["critical"]:
        level: Level = "critical"
    elif score >= rules.level_thresholds["urgent"]:
        level = "urgent"
    else:
        level = "routine"
    # Said of the finding that set the level, with the threshold it passed: the study's stored score
    # is raised to its final level's floor below, so "score X" here would disagree with the row.
    reasons = (
        [f"{top} weighted {score:.2f} ≥ {level} threshold {rules.level_thresholds[level]:.2f}"]
        if top is not None and level != "routine"
        else []
    )

    fired = [(r.level, r.check(measurements)) for r in rules.measurement_rules]
    fired += [(r.level, r.check(probabilities, measurements, positive)) for r in rules.finding_rules]
    fired += [(r.level, r.check(statements or set(), measurements)) for r in rules.statement_rules]
    for rule_level, reason in fired:
        if reason is None:
            continue
        reasons.append(reason)
        if LEVEL_RANK[rule_level] < LEVEL_RANK[level]:
            level = rule_level
    score = max(score, rules.level_score_floor[level])
    return TriageResult(level=level, score=round(min(1.0, score), 4), reasons=reasons)

"""Chest X-ray triage from operating points (configs/triage/cxr.yaml, models/triage.py) and the card's
per-finding ``learned_from_real`` (models/card.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from models.card import InputSpec, ModelCard, TrainingData
from models.triage import FindingRule, TriageRules, triage
from training.data import learned_labels
from training.heldout import held_out_report

REPO = Path(__file__).resolve().parents[2]
RULES = TriageRules.from_yaml(REPO / "configs" / "triage" / "cxr.yaml")


def test_urgent_follows_the_operating_point_not_the_raw_probability():
    # 0.9 under a threshold of 0.95 is not urgent; 0.3 over a threshold of 0.25 is.
    assert triage({"PNEUMONIA": 0.9}, {}, RULES, {"PNEUMONIA": False}).level == "routine"
    result = triage({"PNEUMONIA": 0.3}, {}, RULES, {"PNEUMONIA": True})
    assert result.level == "urgent" and result.reasons == ["pneumonia suspected"]
    assert triage({"PNEUMOTHORAX": 0.4}, {}, RULES, {"PNEUMOTHORAX": True}).level == "critical"
    # The score still orders studies within a level.
    low, high = (triage({"PNEUMONIA": p}, {}, RULES, {"PNEUMONIA": False}).score for p in (0.2, 0.4))
    assert low < high


def test_a_rule_needs_exactly_one_trigger():
    with pytest.raises(ValidationError):
        FindingRule(finding="PNEUMONIA", level="urgent")
    with pytest.raises(ValidationError):
        FindingRule(finding="PNEUMONIA", level="urgent", min_probability=0.5, at_operating_point=True)


def card(learned: dict[str, bool]) -> ModelCard:
    return ModelCard(
        name="cxr",
        task="cxr",
        architecture="densenet_small",
        labels=["PNEUMONIA", "EDEMA"],
        label_names=["Pneumonia", "Edema"],
        input=InputSpec(shape=[None, 1, 64, 64], preprocessing="x"),
        training_data=TrainingData(description="t", n_train=1, n_val=1, fingerprint_sha256="0" * 64),
        intended_use="test",
        learned_from_real=learned,
    )


def test_card_says_which_findings_may_drive_a_level():
    learned = card({"PNEUMONIA": True, "EDEMA": False})
    assert learned.drives_level("PNEUMONIA") and not learned.drives_level("EDEMA")
    assert card({}).drives_level("EDEMA")  # an older card without the field: every finding as before
    assert ModelCard.model_validate_json(learned.model_dump_json()).learned_from_real == {
        "PNEUMONIA": True,
        "EDEMA": False,
    }


def test_learned_labels_need_both_classes_among_known_targets():
    Y = np.array([[1, 0, np.nan], [0, 0, np.nan], [np.nan, 0, 1]], dtype=np.float32)
    assert learned_labels(Y, ["A", "B", "C"]) == {"A": True, "B": False, "C": False}


def test_held_out_report_intervals_cover_the_point_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40), np.zeros(40)]
    p = np.clip(y * 0.3 + rng.random(80) * 0.7, 0, 1)
    report = held_out_report(np.c_[y, np.zeros(80)], np.c_[p, p], {"A": 0.5, "B": 0.5}, ["A", "B"], n_boot=200)
    assert list(report) == ["A"]  # B has no positive: no AUROC, not reported
    entry = report["A"]
    assert entry["n"] == 80 and entry["n_pos"] == 40
    for name in ("auroc", "sensitivity", "specificity"):
        assert entry[name]["ci_low"] <= entry[name]["value"] <= entry[name]["ci_high"]


def test_the_score_reason_does_not_contradict_the_stored_score():
    # A finding weighted just over the urgent threshold, then a measurement rule raising the level
    # to critical: the stored score is the critical floor, and the reason names the finding's own
    # weighted value and the threshold it passed, not a "score" that differs from the row's.
    rules = TriageRules(
        modality="CR",
        finding_weights={"X": 1.0},
        level_thresholds={"critical": 0.9, "urgent": 0.5},
        measurement_rules=[{"measurement": "hr", "op": "<", "value": 40, "level": "critical", "reason": "HR < 40"}],
    )
    result = triage({"X": 0.6}, {"hr": 30}, rules)
    assert result.level == "critical" and result.score == rules.level_score_floor["critical"]
    assert result.reasons == ["X weighted 0.60 ≥ urgent threshold 0.50", "HR < 40"]
    assert not any(reason.startswith("score") for reason in result.reasons)

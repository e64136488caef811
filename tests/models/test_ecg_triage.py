"""configs/triage/ecg.yaml: critical is earned by rules on measurements and statements, never by a
network probability alone; an unreadable ECG gets the configured level and says why."""

from __future__ import annotations

import pytest

from models.triage import TriageRules, triage
from tests.conftest import REPO_ROOT

RULES = TriageRules.from_yaml(REPO_ROOT / "configs" / "triage" / "ecg.yaml")
NORMAL = {"heart_rate_bpm": 72.0, "qrs_duration_ms": 92, "qtc_bazett_ms": 420, "qtc_fridericia_ms": 415}


def level(measurements=None, statements=(), probabilities=None, unreadable=None) -> str:
    return triage(
        probabilities or {},
        {**NORMAL, **(measurements or {})},
        RULES,
        statements=set(statements),
        unreadable=unreadable,
    ).level


@pytest.mark.parametrize(
    "probabilities",
    [
        {"MI": 1.0},
        {"STE": 1.0},
        {"AF": 1.0},
        {"STTC": 1.0, "CD": 1.0, "HYP": 1.0},
        {"WQRS": 1.0, "PREM": 1.0},
    ],
)
def test_no_network_probability_alone_is_critical(probabilities):
    assert level(probabilities=probabilities) != "critical"


def test_every_weight_is_below_the_critical_cut_off():
    assert max(RULES.finding_weights.values()) < RULES.level_thresholds["critical"]


@pytest.mark.parametrize(
    "measurements, expected",
    [
        ({}, "routine"),
        ({"heart_rate_bpm": 155.0}, "critical"),
        ({"heart_rate_bpm": 38.0}, "critical"),
        ({"heart_rate_bpm": 125.0}, "urgent"),
        ({"heart_rate_bpm": 43.0}, "urgent"),
        ({"qtc_bazett_ms": 520, "qtc_fridericia_ms": 510}, "critical"),
        ({"qtc_bazett_ms": 520, "qtc_fridericia_ms": 470}, "urgent"),  # Bazett alone at a fast rate
        ({"qtc_bazett_ms": 520, "qtc_fridericia_ms": 510, "qrs_duration_ms": 140}, "routine"),  # wide QRS
        ({"qrs_duration_ms": 170}, "urgent"),
    ],
)
def test_measurement_rules(measurements, expected):
    assert level(measurements) == expected


@pytest.mark.parametrize(
    "statements, rate, expected",
    [
        ({"st_elevation_stemi_criteria"}, 72.0, "critical"),
        ({"atrial_fibrillation", "af_rapid_ventricular_response"}, 140.0, "critical"),
        ({"atrial_fibrillation", "af_rapid_ventricular_response"}, 115.0, "urgent"),
        ({"atrial_fibrillation"}, 80.0, "urgent"),
        ({"left_bundle_branch_block"}, 70.0, "urgent"),
        ({"sinus_tachycardia"}, 110.0, "routine"),
        ({"first_degree_av_block", "qtc_prolonged"}, 70.0, "routine"),
    ],
)
def test_statement_rules(statements, rate, expected):
    assert level({"heart_rate_bpm": rate}, statements) == expected


def test_unreadable_gets_its_level_whatever_else_it_shows():
    result = triage(
        {"STE": 1.0},
        {**NORMAL, "heart_rate_bpm": 200.0},
        RULES,
        statements={"st_elevation_stemi_criteria"},
        unreadable="Repeat the ECG: leads V1–V3 noisy",
    )
    assert result.level == RULES.unreadable_level == "urgent"
    assert result.reasons == ["Repeat the ECG: leads V1–V3 noisy"]

"""Every place that names an ECG measurement names an ``EcgMeasurement`` (datasets/vocabulary/ecg_measurements.py).

The keys are plain strings in stored reads, the API, the page and the catalogs, so a renamed or misspelt
key fails nowhere by itself: the measurement is just missing (an uncoded FHIR Observation, an empty cell,
a triage rule that never fires). These tests make each such use fail instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from datasets.vocabulary import i18n
from datasets.vocabulary.ecg_measurements import CART_MEASUREMENTS, EcgMeasurement
from evaluation.ecg_measurements import MORTARA_NAMES, PHILIPS_TAGS, PLAUSIBLE
from models.triage import TriageRules
from serving.results.fhir import MEASUREMENTS
from serving.results.report_pdf import PRINTED_MEASUREMENTS

REPO = Path(__file__).resolve().parents[1]
MEMBERS = {member.value for member in EcgMeasurement}
# A string literal spelled like a measurement key (one with a unit suffix).
KEY_LITERAL = re.compile(r"""["']([a-z][a-z0-9_]*_(?:ms|bpm|deg|mv))["']""")


@pytest.mark.parametrize(
    "where,keys",
    [
        ("evaluation PHILIPS_TAGS (cart tag → ours)", list(PHILIPS_TAGS.values())),
        ("evaluation MORTARA_NAMES (cart name → ours)", list(MORTARA_NAMES.values())),
        ("evaluation PLAUSIBLE", list(PLAUSIBLE)),
        ("serving FHIR MEASUREMENTS", list(MEASUREMENTS)),
        ("serving PDF PRINTED_MEASUREMENTS", list(PRINTED_MEASUREMENTS)),
    ],
)
def test_the_python_tables_name_members(where, keys):
    assert keys and all(isinstance(key, EcgMeasurement) for key in keys), where


def test_the_ecg_triage_rules_name_members():
    rules = TriageRules.from_yaml(REPO / "configs" / "triage" / "ecg.yaml")
    assert rules.measurement_names() and set(rules.measurement_names()) <= MEMBERS


def test_a_misspelt_measurement_in_an_ecg_triage_rule_is_a_config_error():
    raw = yaml.safe_load((REPO / "configs" / "triage" / "ecg.yaml").read_text(encoding="utf-8"))
    # deep in a statement rule's condition, where a typo would silently never fire
    raw["statement_rules"][1]["and_measurement"]["measurement"] = "heart_rate"
    with pytest.raises(ValueError, match="unknown ECG measurement.*heart_rate"):
        TriageRules.model_validate(raw)
    raw = yaml.safe_load((REPO / "configs" / "triage" / "ecg.yaml").read_text(encoding="utf-8"))
    raw["measurement_rules"][2]["and_measurement"]["and_measurement"]["measurement"] = "qrs_ms"
    with pytest.raises(ValueError, match="qrs_ms"):
        TriageRules.model_validate(raw)


def test_a_misspelt_statement_in_an_ecg_triage_rule_is_a_config_error():
    raw = yaml.safe_load((REPO / "configs" / "triage" / "ecg.yaml").read_text(encoding="utf-8"))
    raw["statement_rules"][0]["statement"] = "st_elevation_stemi"
    with pytest.raises(ValueError, match="unknown ECG statement.*st_elevation_stemi"):
        TriageRules.model_validate(raw)


def test_the_page_names_members():
    # JavaScript cannot import the enum: read the page's sources instead, so renaming a member fails here.
    sources = {path.name: path.read_text(encoding="utf-8") for path in (REPO / "serving" / "web").glob("*.js")}
    (listed,) = re.findall(r"const MEASURES = \[(.*?)\];", sources["study.js"], re.DOTALL)
    shown = re.findall(r'"([^"]+)"', listed)
    assert shown and set(shown) <= set(CART_MEASUREMENTS), set(shown) - set(CART_MEASUREMENTS)
    for name, source in sources.items():
        spelled = set(KEY_LITERAL.findall(source))
        assert spelled <= MEMBERS, f"{name}: {sorted(spelled - MEMBERS)} are not EcgMeasurement values"


@pytest.mark.parametrize("locale", i18n.SUPPORTED_LOCALES)
def test_the_catalogs_label_members_only(locale):
    catalog = i18n.catalog(locale, ("measurement", "unit"))
    for context in ("measurement", "unit"):
        assert set(catalog[context]) <= MEMBERS, (context, sorted(set(catalog[context]) - MEMBERS))
    # and every measurement the page shows has its label and unit in each language
    assert set(CART_MEASUREMENTS) <= set(catalog["measurement"]) & set(catalog["unit"])

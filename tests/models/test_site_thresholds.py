"""Per-site operating points (local calibration): a card carrying `preread evaluate
--write-site-thresholds` results makes the pre-readers use a site's own thresholds for studies from
that site, and the card's global ones for everyone else."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.card import SITE_THRESHOLDS_KEY, ModelCard

SITE_POINTS = {
    "computed_at": "2026-11-30T08:00:00+00:00",
    "source": "worklist:/exports/2026-11.json",
    "sites": {
        "demo": {
            "AF": {"threshold": 0.0, "sensitivity": 1.0, "n": 40, "n_pos": 6},
            "PREM": {"threshold": 0.0, "sensitivity": 1.0, "n": 40, "n_pos": 5},
            "STE": {"threshold": None, "warning": "2 positives < 5: global threshold kept"},
            "NORM": {"threshold": 1.0, "sensitivity": 0.9, "n": 40, "n_pos": 30},
        }
    },
}


def _with_site_points(card: ModelCard) -> ModelCard:
    return card.model_copy(update={"metrics": {**card.metrics, SITE_THRESHOLDS_KEY: SITE_POINTS}})


def test_card_thresholds_for_a_site(exported_model_dir: Path):
    card = _with_site_points(ModelCard.load(exported_model_dir))
    thresholds, point = card.thresholds_for_site("demo")
    assert thresholds["AF"] == 0.0 and thresholds["NORM"] == 1.0
    assert thresholds["STE"] == card.thresholds["STE"], "a label without a site point keeps the global threshold"
    assert point == {
        "site": "demo",
        "labels": ["AF", "NORM", "PREM"],
        "source": SITE_POINTS["source"],
        "computed_at": SITE_POINTS["computed_at"],
    }
    for other in ("other", None):
        assert card.thresholds_for_site(other) == (card.thresholds, None)
    plain = ModelCard.load(exported_model_dir)
    assert plain.thresholds_for_site("demo") == (plain.thresholds, None)


def test_ecg_reader_uses_the_sending_sites_operating_points(exported_model_dir: Path, cinc_dir: Path):
    from datasets.ecg.readers import read_wfdb
    from models.backends import load_backend
    from models.ecg.pipeline import EcgInput, EcgPreReader
    from models.triage import TriageRules
    from tests.conftest import REPO_ROOT

    card = _with_site_points(ModelCard.load(exported_model_dir))
    reader = EcgPreReader(
        load_backend(exported_model_dir), card, TriageRules.from_yaml(REPO_ROOT / "configs" / "triage" / "ecg.yaml")
    )
    record = read_wfdb(cinc_dir / "E07500.hea").in_standard_order()
    global_read, demo_read = reader.read_batch(
        [EcgInput(record.signals, record.sampling_rate), EcgInput(record.signals, record.sampling_rate, site="demo")]
    )
    by_code = {f.code: f for f in global_read.findings}
    demo = {f.code: f for f in demo_read.findings}
    # PREM is a network finding: the site's threshold decides. AF is re-stated from its definition
    # (irregular RR, no P wave): a site threshold of 0 cannot make it positive in sinus rhythm.
    assert demo["PREM"].threshold == 0.0 and demo["PREM"].positive is True
    assert demo["AF"].threshold == 0.0 and demo["AF"].positive is False and demo["AF"].source == "rule"
    assert demo["NORM"].threshold == 1.0 and demo["NORM"].positive is (demo["NORM"].probability >= 1.0)
    assert by_code["PREM"].threshold == card.thresholds["PREM"]
    assert demo["PREM"].probability == by_code["PREM"].probability, "the same network output, another operating point"
    assert demo_read.operating_point.site == "demo" and global_read.operating_point.site is None


@pytest.mark.parametrize("site, expected", [("demo", 0.0), ("other", None)])
def test_cxr_reader_applies_site_points_under_its_overrides(site, expected):
    """The CXR reader's own overrides (deployment settings) still win over a site's points."""
    from models.cxr.pipeline import CxrPreReader

    class Card:  # only what thresholds_for needs
        thresholds = {"PNEUMONIA": 0.5, "ANY": 0.5}

        @staticmethod
        def thresholds_for_site(s):
            return ({"PNEUMONIA": 0.0, "ANY": 0.5}, {"site": s}) if s == "demo" else (dict(Card.thresholds), None)

    reader = CxrPreReader.__new__(CxrPreReader)
    reader.card, reader.threshold_overrides = Card, {"ANY": 0.9}
    thresholds, point = reader.thresholds_for(site)
    assert thresholds["ANY"] == 0.9
    assert thresholds["PNEUMONIA"] == (0.5 if expected is None else expected)
    assert (point is None) == (expected is None)

"""The worklist page leaves the read's own score line out of the reasons it shows (serving/web/worklist.js
``SCORE_REASON``): it prints the row's score in the reader's language instead. The line is written by
models/triage.py, so a change of its wording there must not put an untranslated English line on the
Chinese page. This reads the page's pattern and checks it against what triage writes."""

from __future__ import annotations

import re

from models.triage import TriageRules, triage
from tests.conftest import REPO_ROOT


def _page_pattern() -> re.Pattern[str]:
    source = (REPO_ROOT / "serving" / "web" / "worklist.js").read_text(encoding="utf-8")
    (literal,) = re.findall(r"export const SCORE_REASON = /(.+)/;", source)
    return re.compile(literal)


def test_the_page_recognises_the_score_line_triage_writes_and_nothing_else():
    rules = TriageRules(
        modality="CR",
        finding_weights={"PNEUMONIA": 1.0},
        level_thresholds={"critical": 0.9, "urgent": 0.5},
        measurement_rules=[{"measurement": "hr", "op": "<", "value": 40, "level": "critical", "reason": "HR < 40"}],
    )
    score_line, rule_line = triage({"PNEUMONIA": 0.6}, {"hr": 30}, rules).reasons
    pattern = _page_pattern()
    assert pattern.match(score_line), score_line
    assert pattern.match("score 0.50 from STE")  # reads stored before the wording changed
    assert not pattern.match(rule_line)

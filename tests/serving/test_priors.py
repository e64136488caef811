"""Comparison with the prior (serving/reading/priors.py): deltas, new and resolved statements, the
sentence in the locale."""

from __future__ import annotations

from datetime import UTC, datetime

from models.read import Finding, ModelIdentity, PreRead, Statement, Triage
from serving.reading.priors import compare, comparison_text, kind_of, study_day


def ecg(statements: list[tuple[str, str]], **measurements) -> PreRead:
    return PreRead(
        modality="ECG",
        disclaimer="x",
        model=ModelIdentity(name="ecg"),
        triage=Triage(level="routine", score=0.1),
        measurements=measurements,
        statements=[Statement(code=c, name=n) for c, n in statements],
    )


def test_ecg_comparison_names_new_and_resolved_statements_and_measurement_deltas():
    prior = ecg(
        [("SR", "Sinus rhythm")],
        heart_rate_bpm=72.0,
        pr_interval_ms=160.0,
        qrs_duration_ms=90.0,
        qtc_bazett_ms=420.0,
        qrs_axis_deg=-170.0,
    )
    now = ecg(
        [("AFIB", "Atrial fibrillation")],
        heart_rate_bpm=128.0,
        qrs_duration_ms=96.0,
        qtc_bazett_ms=455.0,
        qrs_axis_deg=175.0,
    )
    comparison = compare(now, prior, "1.2.3", "2026-11-02", "zh-CN")
    assert comparison.study_uid == "1.2.3" and comparison.date == "2026-11-02"
    assert comparison.new_statements == ["AFIB"] and comparison.resolved_statements == ["SR"]
    assert comparison.deltas["heart_rate_bpm"] == 56.0
    assert comparison.deltas["qtc_bazett_ms"] == 35.0
    assert comparison.deltas["qrs_axis_deg"] == -15.0  # across ±180°, not 345°
    assert comparison.deltas["pr_interval_ms"] is None  # not measured now: no invented change
    assert comparison.text == "与 2026-11-02 心电图比较：新出现心房颤动；窦性心律已消失"


def test_unchanged_and_english_and_untranslated_codes():
    same = ecg([("SR", "Sinus rhythm")])
    assert compare(same, same, "1", "2026-01-01", "zh-CN").text == "与 2026-01-01 心电图比较：无新出现或消失的诊断"
    text = comparison_text("en", "ECG", "2026-11-02", ["NEW_CODE"], [], names={"NEW_CODE": "Something new"})
    assert text == "Compared with the ECG of 2026-11-02: new Something new"


def test_chest_film_compares_positive_findings():
    def film(*codes):
        return PreRead(
            modality="CXR",
            disclaimer="x",
            model=ModelIdentity(name="cxr"),
            triage=Triage(level="routine", score=0),
            findings=[Finding(code=c, name=c.title(), probability=0.9, threshold=0.5, positive=True) for c in codes],
        )

    comparison = compare(film("EFFUSION", "PNEUMONIA"), film("PNEUMONIA"), "9", "2026-10-01", "zh-CN")
    assert comparison.new_statements == ["EFFUSION"] and comparison.deltas == {}
    assert comparison.text == "与 2026-10-01 胸片比较：新出现胸腔积液"


def test_kind_and_day():
    assert kind_of("CR") == kind_of("DX") == "CXR" and kind_of("ECG") == "ECG"
    assert study_day("20261102", None) == "2026-11-02"
    assert study_day(None, datetime(2026, 12, 6, 23, 0, tzinfo=UTC)) == "2026-12-06"

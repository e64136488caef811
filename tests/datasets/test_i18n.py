"""Message catalogs (datasets/vocabulary/i18n.py + locales/*.po): complete, consistent, standard Chinese
clinical terms, and a missing entry never breaks a page or a report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datasets.vocabulary import QualityReason, TriageLevel, i18n
from datasets.vocabulary.cxr_labels import CXR_LABELS
from datasets.vocabulary.ecg_labels import ECG_LABELS

REPO = Path(__file__).resolve().parents[2]


def test_both_catalogs_hold_the_same_keys_with_the_same_placeholders():
    zh, en = i18n.keys("zh_CN"), i18n.keys("en")
    assert zh == en, f"only in zh_CN: {sorted(zh - en)[:10]}; only in en: {sorted(en - zh)[:10]}"
    for context, key in en:
        assert i18n.placeholders(i18n.lookup("zh_CN", context, key)) == i18n.placeholders(
            i18n.lookup("en", context, key)
        ), (context, key)


@pytest.mark.parametrize(
    "context,codes",
    [
        ("level", [level.value for level in TriageLevel]),
        ("quality", [reason.value for reason in QualityReason]),
        ("finding.ECG", [label.code for label in ECG_LABELS] + ["NORM", "MI", "STTC", "CD", "HYP"]),
        ("finding.CXR", [label.code for label in CXR_LABELS]),
    ],
)
def test_every_code_of_the_vocabulary_is_translated_into_chinese(context, codes):
    for code in codes:
        text = i18n.lookup("zh_CN", context, code)
        assert text and re.search(r"[\u4e00-\u9fff]", text), f"{context}/{code} has no Chinese text: {text!r}"


@pytest.mark.parametrize(
    "context,code,expected",
    [
        ("statement", "SR", "窦性心律"),
        ("statement", "STACH", "窦性心动过速"),
        ("statement", "SBRAD", "窦性心动过缓"),
        ("statement", "AFIB", "心房颤动"),
        ("statement", "AFLT", "心房扑动"),
        ("statement", "1AVB", "一度房室传导阻滞"),
        ("statement", "CRBBB", "完全性右束支传导阻滞"),
        ("statement", "CLBBB", "完全性左束支传导阻滞"),
        ("statement", "LNGQT", "QT间期延长"),
        ("statement", "LAD", "电轴左偏"),
        ("statement", "RAD", "电轴右偏"),
        ("statement", "LVOLT", "低电压"),
        ("statement", "LVH", "左心室肥厚"),
        ("statement", "STE", "ST段抬高"),
        ("finding.ECG", "NORM", "正常心电图"),
        ("finding.ECG", "MI", "心肌梗死"),
        ("finding.ECG", "STTC", "ST/T改变"),
        ("finding.ECG", "CD", "传导异常"),
        ("finding.ECG", "HYP", "心室肥厚"),
        ("finding.CXR", "PNEUMONIA", "肺炎"),
        ("finding.CXR", "PNEUMOTHORAX", "气胸"),
        ("finding.CXR", "EFFUSION", "胸腔积液"),
        ("finding.CXR", "CARDIOMEGALY", "心脏增大"),
        ("level", "critical", "危急"),
        ("level", "urgent", "紧急"),
        ("level", "routine", "常规"),
    ],
)
def test_standard_chinese_clinical_terms(context, code, expected):
    assert i18n.translate("zh-CN", context, code) == expected


def test_quality_reason_names_the_leads_as_a_run():
    assert i18n.quality_text("zh-CN", "ecg_noisy_lead", ["V1", "V2", "V3"]) == "请重做心电图：V1–V3导联噪声大"
    assert i18n.quality_text("en", QualityReason.ECG_FLAT_LEAD, ["I", "aVL"]).endswith("I, aVL (electrode off?)")


def test_a_code_not_yet_translated_falls_back_to_its_english_name_and_never_raises():
    assert i18n.statement_name("zh_CN", "BRAND_NEW_CODE", "Brand-new statement") == "Brand-new statement"
    assert i18n.finding_name("zh_CN", "ECG", "UNKNOWN") == "UNKNOWN"
    assert i18n.translate("zh_CN", "ui", "worklist.range", first=1) == "第 1–{last} 条，共 {total} 条"  # unfilled stays
    assert i18n.translate("fr", "level", "critical") == "critical"  # unknown locale: English, no exception


def test_locale_tags_are_normalised_and_unknown_ones_refused():
    assert i18n.normalize_locale("zh-CN") == i18n.normalize_locale("zh_Hans_CN") == "zh_CN"
    assert i18n.normalize_locale("en-US") == "en"
    assert i18n.normalize_locale(None) == i18n.DEFAULT_LOCALE == "zh_CN"
    assert i18n.bcp47("zh_CN") == "zh-CN"
    with pytest.raises(i18n.UnknownLocale):
        i18n.normalize_locale("fr-FR")


def test_page_uses_only_keys_the_catalog_has():
    """Every data-i18n key of index.html and every t("…") key of the page's scripts exists."""
    web = REPO / "serving" / "web"
    used = set(re.findall(r'data-i18n(?:-title|-aria)?="([^"]+)"', (web / "index.html").read_text(encoding="utf-8")))
    for script in web.glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_.]*[a-z_])"', script.read_text(encoding="utf-8")))
    assert used, "no keys found: the pattern no longer matches the page"
    missing = sorted(key for key in used if i18n.lookup("en", "ui", key) is None)
    assert not missing, f"page keys missing from the catalog: {missing}"


def test_catalog_for_the_page_fills_chinese_gaps_with_english():
    page = i18n.catalog("zh_CN")
    assert page["ui"]["worklist.title"] == "阅片工作列表"
    assert set(page["ui"]) == {key for context, key in i18n.keys("en") if context == "ui"}

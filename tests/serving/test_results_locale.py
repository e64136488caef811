"""Results in the deployment's locale: the SR's text values in Chinese with Specific Character Set
ISO_IR 192 to carry them, codes unchanged; a Chinese patient name survives the round trip."""

from __future__ import annotations

import io

import pydicom

from datasets.imaging import wrap_png_as_dicom
from serving.results import build_ai_sr, findings_from_sr

MODEL = {"name": "cxr", "version": "3", "manufacturer": "preread", "demo": True}


def test_sr_in_chinese_is_utf8_and_keeps_its_codes(nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    source = wrap_png_as_dicom(png, patient_name="Zhang^San")
    source.SpecificCharacterSet = "GB18030"
    source.PatientName = "Zhang^San=张^三"
    findings = [
        {"code": "PNEUMONIA", "name": "Pneumonia", "probability": 0.8, "threshold": 0.5, "positive": True},
        {"code": "EFFUSION", "name": "Pleural effusion", "probability": 0.1, "threshold": 0.5, "positive": False},
    ]
    sr = build_ai_sr([source], findings, MODEL, {"level": "urgent", "score": 0.8}, locale="zh-CN")
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.SeriesDescription.startswith("AI 预读 cxr v3") and "演示模型" in back.SeriesDescription
    assert str(back.PatientName) == "Zhang^San=张^三"
    assert "张^三".encode() in buffer.getvalue()  # really UTF-8 on the wire
    read = {f["code"]: f for f in findings_from_sr(back)}
    assert read["PNEUMONIA"]["positive"] and not read["EFFUSION"]["positive"]
    assert read["PNEUMONIA"]["coding"]["value"] == "233604007"  # the code never changes with the locale
    assert read["PNEUMONIA"]["coding"]["meaning"] == "肺炎"


def test_sr_without_a_locale_stays_ascii_english(nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    sr = build_ai_sr([wrap_png_as_dicom(png)], [{"code": "PNEUMONIA", "probability": 0.8, "positive": True}], MODEL)
    assert sr.SeriesDescription.isascii()

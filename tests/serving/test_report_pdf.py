"""The printed report (serving/results/report_pdf.py): Chinese by default, the CJK font embedded, the
impression, reader and "reviewed by" line in the text layer, the tracing on a real millimetre grid."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from datasets.ecg.synthetic import simulate_ecg
from models.read import Finding, ModelIdentity, PreRead, PriorComparison, Statement, Triage
from serving.results.report_pdf import EcgTracing, ReportSubject, SignedReport, build_report_pdf

IMPRESSION = "窦性心动过速，一度房室传导阻滞。建议复查心电图。"


def ecg_read() -> PreRead:
    return PreRead(
        modality="ECG",
        disclaimer="AI preliminary ECG read",
        model=ModelIdentity(name="ecg", version=3, demo=True),
        findings=[
            Finding(code="STACH", name="Sinus tachycardia", probability=0.91, threshold=0.5, positive=True),
            Finding(code="NORM", name="Normal sinus rhythm", probability=0.05, threshold=0.5, positive=False),
        ],
        measurements={
            "heart_rate_bpm": 112.0,
            "pr_interval_ms": 224.0,
            "qrs_duration_ms": 92.0,
            "qtc_bazett_ms": 441.0,
            "qrs_axis_deg": 35.0,
        },
        statements=[
            Statement(code="STACH", name="Sinus tachycardia"),
            Statement(code="1AVB", name="1st degree AV block"),
            Statement(code="NOT_YET_TRANSLATED", name="Brand-new statement"),
        ],
        triage=Triage(level="urgent", score=0.6),
        prior=PriorComparison(
            study_uid="1.2.3.0", date="2026-11-02", text="与 2026-11-02 心电图比较：新出现窦性心动过速"
        ),
    )


def signed(**over) -> SignedReport:
    values = dict(
        reader="王医生",
        signed_at=datetime(2026, 12, 6, 9, 30, tzinfo=UTC),
        impression=IMPRESSION,
        agree=False,
        findings={"STACH": True, "NORM": False},
    )
    return SignedReport(**(values | over))


def tracing() -> EcgTracing:
    record = simulate_ecg({"STACH"}, np.random.default_rng(1), sampling_rate=250.0)
    return EcgTracing(
        sampling_rate=record.sampling_rate,
        leads={lead: [float(v) for v in row] for lead, row in zip(record.leads, record.signals)},
    )


def pdf_text(data: bytes, tmp_path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: scripts/install-peers.sh installs it")
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def test_ecg_report_is_chinese_by_default_with_impression_reader_and_review_line(tmp_path):
    data = build_report_pdf(
        ecg_read(), signed(), ReportSubject(site="demo", study_uid="1.2.3.4", patient_name="张*"), tracing=tracing()
    )
    assert data.startswith(b"%PDF")
    text = pdf_text(data, tmp_path)
    flat = re.sub(r"\s+", "", text)
    assert "十二导联心电图报告" in flat
    assert re.sub(r"\s+", "", IMPRESSION) in flat
    assert "AI初步预读已由王医生审核" in flat
    assert "窦性心动过速" in flat and "一度房室传导阻滞" in flat
    assert "Brand-new statement" in text  # an untranslated code falls back to its English name
    assert "与2026-11-02心电图比较：新出现窦性心动过速" in flat
    assert "2026-12-0609:30" in flat
    fonts = subprocess.run(["pdffonts", "-"], input=data, capture_output=True, check=True).stdout.decode()
    cjk = [line for line in fonts.splitlines() if "NotoSansCJK" in line]
    assert cjk and all(" yes " in line for line in cjk), fonts  # the shipped CJK font, embedded


def test_english_report_when_asked(tmp_path):
    text = pdf_text(
        build_report_pdf(
            ecg_read(),
            signed(impression="Sinus tachycardia."),
            ReportSubject(site="demo", study_uid="1.2.3.4"),
            locale="en",
        ),
        tmp_path,
    )
    assert "12-lead ECG report" in text and "AI preliminary read reviewed by 王医生" in text
    assert "Sinus tachycardia." in text


def test_tracing_is_drawn_on_a_millimetre_grid_with_a_calibration_pulse(tmp_path):
    """Rasterise page 1 at a known resolution and measure the grid pitch: 5 mm between bold lines."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    data = build_report_pdf(ecg_read(), signed(), ReportSubject(site="demo", study_uid="1"), tracing=tracing())
    dpi = 254  # 10 px per mm
    (tmp_path / "r.pdf").write_bytes(data)
    subprocess.run(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-r",
            str(dpi),
            "-png",
            "-singlefile",
            str(tmp_path / "r.pdf"),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    img = np.asarray(Image.open(tmp_path / "page.png").convert("RGB")).astype(int)
    reddish = (img[..., 0] > 180) & (img[..., 1] < 170) & (img[..., 2] < 170)  # the bold (5 mm) grid colour
    columns = np.flatnonzero(reddish.sum(axis=0) > reddish.shape[0] * 0.3)
    starts = columns[np.insert(np.diff(columns) > 1, 0, True)]
    pitches = np.diff(starts)
    assert len(pitches) > 40, "no bold grid lines found"
    assert np.median(pitches) == pytest.approx(50, abs=1)  # 5 mm at 10 px/mm


def test_chest_film_report_has_the_film_and_translated_findings(tmp_path):
    film = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((256, 200)) * 255).astype(np.uint8)).save(film, "PNG")
    read = PreRead(
        modality="CXR",
        disclaimer="x",
        model=ModelIdentity(name="cxr", version=1),
        findings=[Finding(code="PNEUMOTHORAX", name="Pneumothorax", probability=0.8, threshold=0.5, positive=True)],
        triage=Triage(level="critical", score=0.8),
    )
    data = build_report_pdf(
        read,
        signed(impression="右侧气胸。", findings={"PNEUMOTHORAX": True}),
        ReportSubject(site="demo", study_uid="9"),
        film_png=film.getvalue(),
    )
    flat = re.sub(r"\s+", "", pdf_text(data, tmp_path))
    assert "胸部X线检查报告" in flat and "气胸" in flat and "右侧气胸。" in flat
    assert "无既往检查可供比较。" in flat
    assert b"/Subtype /Image" in data or b"/Subtype/Image" in data

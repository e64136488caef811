"""The printed report: a signed study as a PDF the clinic can print or send to the patient.

Built with fpdf2 on a millimetre page, so the 12-lead tracing lies on a real grid: 1 mm small and 5 mm
large squares, 25 mm/s and 10 mm/mV, a 1 mV calibration pulse at the start of each row (3×4 leads of
2.5 s + a 10 s lead II rhythm strip). A chest film is printed with its findings. Every word comes from
the locale's message catalog (Chinese by default); codes stay as they are. The same CJK font the web
page ships (serving/web/static/fonts/, Noto Sans CJK SC, OFL) is embedded, so the PDF shows the same
glyphs on any printer or viewer.

Pure: typed inputs in (PreRead + the signed report + who and where), bytes out; no database, no I/O
but reading the font.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF, FontFace
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from datasets.vocabulary import i18n
from datasets.vocabulary.ecg_measurements import EcgMeasurement
from models.read import PreRead

FONT_WOFF2 = Path(__file__).resolve().parents[1] / "web" / "static" / "fonts" / "NotoSansSC-preread-subset.woff2"
FONT = "PrereadCJK"
ECG_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
MM_PER_S, MM_PER_MV = 25.0, 10.0
GRID_FINE, GRID_BOLD = (246, 196, 196), (226, 128, 128)


class SignedReport(BaseModel):
    """What the reader signed (from the store's final report) and who signed it."""

    model_config = ConfigDict(extra="forbid")
    reader: str  # display name of the signing doctor
    signed_at: datetime
    impression: str = ""
    agree: bool = True
    findings: dict[str, bool] = Field(default_factory=dict)  # finding code → the doctor's call
    status: str = "final"  # final or amended


class ReportSubject(BaseModel):
    """Where and whom: the study's identity as printed (the caller decodes and masks the name)."""

    model_config = ConfigDict(extra="forbid")
    site: str
    study_uid: str
    patient_name: str | None = None
    patient_id: str | None = None
    patient_sex: str | None = None
    patient_age: str | None = None
    study_date: str | None = None
    arrived_at: datetime | None = None


class EcgTracing(BaseModel):
    """The signals to print, in mV, at ``sampling_rate`` Hz (None marks a gap)."""

    model_config = ConfigDict(extra="forbid")
    sampling_rate: float = Field(gt=0)
    leads: dict[str, list[float | None]]


@lru_cache(maxsize=1)
def font_file() -> str:
    """The shipped WOFF2 as an OpenType file fpdf2 can embed (decompressed once per font version)."""
    data = FONT_WOFF2.read_bytes()
    out = Path(tempfile.gettempdir()) / "preread-fonts" / f"{hashlib.sha256(data).hexdigest()[:16]}.otf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        font = TTFont(io.BytesIO(data))
        font.flavor = None
        partial = out.with_suffix(f".{os.getpid()}.part")
        font.save(str(partial))
        os.replace(partial, out)  # atomic: a concurrent builder never reads half a font
    return str(out)


class _Pdf(FPDF):
    def __init__(self, locale: str, orientation: str, footer_text: str):
        super().__init__(orientation=orientation, unit="mm", format="A4")
        self.locale = locale
        self.footer_text = footer_text
        self.add_font(FONT, "", font_file())
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(10, 10, 10)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, size=7)
        self.set_text_color(90, 90, 90)
        page = i18n.translate(self.locale, "report", "page", page=self.page_no())
        self.cell(0, 4, f"{self.footer_text}    {page}", align="C")
        self.set_text_color(0, 0, 0)


def build_report_pdf(
    read: PreRead,
    report: SignedReport,
    subject: ReportSubject,
    locale: str | None = None,
    tracing: EcgTracing | None = None,
    film_png: bytes | None = None,
) -> bytes:
    """The signed report as PDF bytes, in ``locale`` (default: the catalog default, zh_CN)."""
    locale = i18n.normalize_locale(locale)
    t = _Words(locale)
    disclaimer = t("disclaimer", "preliminary")
    if read.modality == "ECG":
        pdf = _Pdf(locale, "landscape", disclaimer)
        pdf.add_page()
        _header(pdf, t, read, subject)
        _ecg_summary(pdf, t, read, report)
        if tracing is not None:
            _ecg_grid(pdf, tracing, top=pdf.get_y() + 2)
        pdf.add_page()
    else:
        pdf = _Pdf(locale, "portrait", disclaimer)
        pdf.add_page()
        _header(pdf, t, read, subject)
        if film_png:
            _film(pdf, film_png, t)
    _details(pdf, t, read, report)
    return bytes(pdf.output())


class _Words:
    """Catalog look-ups bound to one locale."""

    def __init__(self, locale: str):
        self.locale = locale

    def __call__(self, context: str, key: str, default: str | None = None, **params) -> str:
        return i18n.translate(self.locale, context, key, default, **params)


def _header(pdf: _Pdf, t: _Words, read: PreRead, subject: ReportSubject) -> None:
    pdf.set_font(FONT, size=15)
    pdf.cell(0, 8, t("report", f"title.{read.modality}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    sex = t("report", f"sex.{subject.patient_sex}") if subject.patient_sex in ("M", "F", "O") else ""
    fields = [
        (t("report", "site"), subject.site),
        (t("report", "patient"), subject.patient_name or "—"),
        (t("report", "patient_id"), subject.patient_id or "—"),
        (t("report", "sex"), sex or "—"),
        (t("report", "age"), subject.patient_age or "—"),
        (
            t("report", "study_date"),
            subject.study_date or (subject.arrived_at.strftime("%Y-%m-%d %H:%M") if subject.arrived_at else "—"),
        ),
    ]
    pdf.cell(0, 5, "    ".join(f"{label}：{value}" for label, value in fields), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=7)
    pdf.set_text_color(100, 100, 100)
    pdf.cell(0, 4, f"{t('report', 'study')}：{subject.study_uid}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)


PRINTED_MEASUREMENTS: tuple[EcgMeasurement, ...] = (
    EcgMeasurement.HEART_RATE,
    EcgMeasurement.PR_INTERVAL,
    EcgMeasurement.QRS_DURATION,
    EcgMeasurement.QT_INTERVAL,
    EcgMeasurement.QTC_BAZETT,
    EcgMeasurement.P_AXIS,
    EcgMeasurement.QRS_AXIS,
    EcgMeasurement.T_AXIS,
)
"""The measurements the printed ECG report's summary line shows, in this order (those a cart prints)."""


def _measure_line(t: _Words, read: PreRead) -> str:
    parts = []
    for key in PRINTED_MEASUREMENTS:
        value = read.measurements.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{t('measurement', key, key)} {value:.0f} {t('unit', key, '')}".strip())
    return "  ·  ".join(parts)


def _statements_text(t: _Words, read: PreRead) -> str:
    return "；".join(t("statement", s.code, s.name) for s in read.statements)


def _ecg_summary(pdf: _Pdf, t: _Words, read: PreRead, report: SignedReport) -> None:
    """The lines a cardiologist reads first, above the tracing: measurements, statements, impression,
    signature."""
    pdf.set_font(FONT, size=9)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.multi_cell(
        width, 4.5, f"{t('report', 'measurements')}：{_measure_line(t, read) or '—'}", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.multi_cell(
        width,
        4.5,
        f"{t('report', 'statements')}：{_statements_text(t, read) or '—'}",
        new_x="LMARGIN",
        new_y="NEXT",
        max_line_height=4.5,
    )
    if read.prior is not None and read.prior.text:
        pdf.multi_cell(width, 4.5, f"{t('report', 'prior')}：{read.prior.text}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=10)
    impression = _clip(report.impression or t("ui", "study.no_impression"), 160)
    pdf.multi_cell(width, 5, f"{t('report', 'impression')}：{impression}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=8)
    pdf.cell(0, 4.5, _signature(t, report), new_x="LMARGIN", new_y="NEXT")


def _signature(t: _Words, report: SignedReport) -> str:
    return (
        f"{t('report', 'reader')}：{report.reader}    {t('report', 'signed_at')}："
        f"{report.signed_at.strftime('%Y-%m-%d %H:%M')}    {t('disclaimer', 'reviewed_by', reader=report.reader)}"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ecg_grid(pdf: _Pdf, tracing: EcgTracing, top: float) -> None:
    """3×4 leads + lead II rhythm strip on a millimetre grid, each row led by a 1 mV pulse."""
    pulse_mm, width_mm = 5.0, 250.0
    bottom_limit = pdf.h - 14
    row_mm = min(37.5, (bottom_limit - top) / 4)
    left = (pdf.w - width_mm - pulse_mm) / 2
    height = 4 * row_mm
    _grid(pdf, left, top, width_mm + pulse_mm, height)
    fs = tracing.sampling_rate
    per_column = int(round(2.5 * fs))
    pdf.set_font(FONT, size=8)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.25)
    for r, row in enumerate(ECG_LAYOUT + (("II",),)):
        baseline = top + row_mm * r + row_mm * 0.6
        _pulse(pdf, left, baseline)
        for c, lead in enumerate(row):
            samples = tracing.leads.get(lead) or []
            x0 = left + pulse_mm + c * 62.5
            chunk = samples if len(row) == 1 else samples[c * per_column : (c + 1) * per_column]
            if len(row) == 1:
                chunk = samples[: int(round(10 * fs))]
            _trace(pdf, chunk, fs, x0, baseline)
            pdf.text(x0 + 1, baseline - row_mm * 0.45, lead if len(row) > 1 else "II")
            if c:
                pdf.line(x0, baseline - 3, x0, baseline + 3)
    pdf.set_font(FONT, size=7)
    pdf.text(left, top + height + 3.5, "25 mm/s   10 mm/mV   1 mV")


def _grid(pdf: _Pdf, left: float, top: float, width: float, height: float) -> None:
    for fine in (True, False):
        pdf.set_draw_color(*(GRID_FINE if fine else GRID_BOLD))
        pdf.set_line_width(0.05 if fine else 0.15)
        for mm in range(int(width) + 1):
            if (mm % 5 == 0) != fine:
                pdf.line(left + mm, top, left + mm, top + height)
        for mm in range(int(height) + 1):
            if (mm % 5 == 0) != fine:
                pdf.line(left, top + mm, left + width, top + mm)


def _pulse(pdf: _Pdf, left: float, baseline: float) -> None:
    """1 mV for 0.2 s: 10 mm up, 5 mm wide."""
    pdf.set_draw_color(0, 0, 0)
    pdf.polyline(
        [
            (left, baseline),
            (left + 1, baseline),
            (left + 1, baseline - MM_PER_MV),
            (left + 4, baseline - MM_PER_MV),
            (left + 4, baseline),
            (left + 5, baseline),
        ]
    )


def _trace(pdf: _Pdf, samples: list[float | None], fs: float, x0: float, baseline: float) -> None:
    step = max(1, int(round(fs / 250.0)))  # 250 points a second is finer than a printer's line
    run: list[tuple[float, float]] = []
    for i in range(0, len(samples), step):
        value = samples[i]
        if value is None:
            if len(run) > 1:
                pdf.polyline(run)
            run = []
            continue
        run.append((x0 + i / fs * MM_PER_S, baseline - float(value) * MM_PER_MV))
    if len(run) > 1:
        pdf.polyline(run)


def _film(pdf: _Pdf, png: bytes, t: _Words) -> None:
    with Image.open(io.BytesIO(png)) as img:
        w_px, h_px = img.size
    max_w, max_h = pdf.w - pdf.l_margin - pdf.r_margin, 125.0
    scale = min(max_w / w_px, max_h / h_px)
    w, h = w_px * scale, h_px * scale
    pdf.image(io.BytesIO(png), x=(pdf.w - w) / 2, y=pdf.get_y() + 2, w=w, h=h)
    pdf.set_y(pdf.get_y() + h + 4)


def _details(pdf: _Pdf, t: _Words, read: PreRead, report: SignedReport) -> None:
    """Findings (AI and doctor), measurements, statements, comparison, impression and signature."""
    width = pdf.w - pdf.l_margin - pdf.r_margin
    _findings_table(pdf, t, read, report)
    if read.modality == "ECG":
        _section(pdf, t("report", "measurements"))
        pdf.set_font(FONT, size=9)
        pdf.multi_cell(width, 5, _measure_line(t, read) or "—", new_x="LMARGIN", new_y="NEXT")
        _section(pdf, t("report", "statements"))
        pdf.multi_cell(
            width, 5, _statements_text(t, read) or t("ui", "study.no_statements"), new_x="LMARGIN", new_y="NEXT"
        )
    _section(pdf, t("report", "prior"))
    pdf.multi_cell(
        width,
        5,
        (read.prior.text or read.prior.study_uid) if read.prior else t("report", "no_prior"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    if not read.quality.acceptable:
        _section(pdf, t("report", "quality"))
        for issue in read.quality.reasons:
            pdf.multi_cell(
                width,
                5,
                i18n.quality_text(t.locale, issue.code, issue.leads, issue.text),
                new_x="LMARGIN",
                new_y="NEXT",
            )
    _impression_and_signature(pdf, t, read, report)


def _findings_table(pdf: _Pdf, t: _Words, read: PreRead, report: SignedReport) -> None:
    """One row per finding: its name and code, the AI's probability, the AI's call, the signed call."""
    _section(pdf, t("report", "findings"))
    yes, no = t("report", "positive"), t("report", "negative")
    with pdf.table(
        col_widths=(3, 1, 1, 1),
        text_align=("LEFT", "RIGHT", "CENTER", "CENTER"),
        line_height=5,
        first_row_as_headings=True,
        headings_style=FontFace(emphasis=None, fill_color=(235, 238, 242)),
    ) as table:
        table.row(
            [
                t("ui", "study.col.finding"),
                t("ui", "study.col.probability"),
                t("report", "ai_findings"),
                t("report", "final_findings"),
            ]
        )
        for f in read.findings:
            final = report.findings.get(f.code, f.positive)
            table.row(
                [
                    f"{t(f'finding.{read.modality}', f.code, f.name)} ({f.code})",
                    f"{f.probability * 100:.0f}%",
                    yes if f.positive else no,
                    yes if final else no,
                ]
            )


def _impression_and_signature(pdf: _Pdf, t: _Words, read: PreRead, report: SignedReport) -> None:
    """The reader's impression, whether they agreed with the AI, who signed when, and which model read."""
    width = pdf.w - pdf.l_margin - pdf.r_margin
    _section(pdf, t("report", "impression"))
    pdf.set_font(FONT, size=11)
    pdf.multi_cell(width, 6, report.impression or t("ui", "study.no_impression"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    pdf.ln(2)
    pdf.multi_cell(width, 5, t("report", "agree_yes" if report.agree else "agree_no"), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(width, 5, _signature(t, report), new_x="LMARGIN", new_y="NEXT")
    model = f"{read.model.name} v{read.model.version}"
    if read.model.demo:
        model += f" — {t('disclaimer', 'demo_model')}"
    pdf.set_font(FONT, size=8)
    pdf.multi_cell(width, 4.5, f"{t('report', 'model')}：{model}", new_x="LMARGIN", new_y="NEXT")


def _section(pdf: _Pdf, title: str) -> None:
    pdf.ln(2)
    pdf.set_font(FONT, size=11)
    pdf.cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)

"""Evaluation reports: DIR/index.html with ROC and PR curves, reliability diagrams, confusion
matrices, metric and subgroup tables (PNG images referenced relatively), metrics.json, and
optionally DIR/report.pdf (matplotlib PdfPages)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from evaluation.calibration import reliability_bins
from evaluation.compare import jsonable
from evaluation.metrics import confusion_counts

# Figures are built with matplotlib's object API (``Figure``, not pyplot): no global backend or
# figure registry, so nothing to close and nothing shared with other threads of the service.


def _known(y, p):
    keep = ~np.isnan(y)
    return y[keep] > 0.5, p[keep]


def _grid(n: int):
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.4 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def _curve_figure(Y, P, labels, draw: Callable[[Axes, np.ndarray, np.ndarray, str], None]) -> Figure:
    """One axes with a curve per label that holds both classes (``draw(ax, y, p, code)``)."""
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    for j, code in enumerate(labels):
        y, p = _known(Y[:, j], P[:, j])
        if 0 < y.sum() < len(y):
            draw(ax, y, p, code)
    return fig


def roc_figure(Y, P, labels) -> Figure:
    """ROC curves, one per label."""
    from sklearn.metrics import roc_curve  # noqa: PLC0415 - scikit-learn is heavy: loaded when a report is drawn

    def draw(ax: Axes, y: np.ndarray, p: np.ndarray, code: str) -> None:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=code)

    fig = _curve_figure(Y, P, labels, draw)
    ax = fig.axes[0]
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC curves", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def pr_figure(Y, P, labels) -> Figure:
    """Precision–recall curves, one per label, with its prevalence."""
    from sklearn.metrics import precision_recall_curve  # noqa: PLC0415 - scikit-learn is heavy: loaded when a report is drawn

    def draw(ax: Axes, y: np.ndarray, p: np.ndarray, code: str) -> None:
        precision, recall, _ = precision_recall_curve(y, p)
        ax.step(recall, precision, where="post", label=f"{code} (prev {y.mean():.2f})")

    fig = _curve_figure(Y, P, labels, draw)
    ax = fig.axes[0]
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title="Precision–recall curves",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def reliability_figure(Y, P, labels, n_bins: int = 10):
    fig, axes = _grid(len(labels))
    for j, code in enumerate(labels):
        ax = axes[j]
        bins = reliability_bins(Y[:, j], P[:, j], n_bins=n_bins)
        used = bins["count"] > 0
        centers = (bins["edges"][:-1] + bins["edges"][1:]) / 2
        ax.bar(centers[used], bins["observed"][used], width=1.0 / n_bins, alpha=0.6, edgecolor="k", lw=0.4)
        ax.plot(bins["mean_predicted"][used], bins["observed"][used], "o-", ms=3, color="C1")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=code, xlabel="predicted", ylabel="observed")
    fig.suptitle("Reliability diagrams")
    fig.tight_layout()
    return fig


def confusion_figure(Y, P, labels, thresholds):
    fig, axes = _grid(len(labels))
    for j, code in enumerate(labels):
        ax = axes[j]
        c = confusion_counts(Y[:, j], P[:, j], thresholds[code])
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(matrix, cmap="Blues")
        for (r, k), v in np.ndenumerate(matrix):
            ax.text(
                k, r, str(v), ha="center", va="center", fontsize=11, color="white" if v > matrix.max() / 2 else "black"
            )
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["pred −", "pred +"],
            yticklabels=["true −", "true +"],
            title=f"{code} @ {thresholds[code]:.2f}",
        )
    fig.suptitle("Confusion matrices at the card's thresholds")
    fig.tight_layout()
    return fig


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _ci(entry: dict | None) -> str:
    if not entry:
        return "–"
    value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if low is None or (isinstance(low, float) and np.isnan(low)):
        return f"{value:.3f}"
    return f"{value:.3f} <small>({low:.3f}–{high:.3f})</small>"


def _table(frame: pd.DataFrame, warn_column: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cls = ' class="warn"' if warn_column and row.get(warn_column) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(v)}</td>" for v in row.values) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}tr.warn td{background:#fff4d6}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#555;font-size:13px}
.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}"""


def _figures(Y, P, labels, thresholds) -> dict[str, tuple[str, Figure]]:
    """The report's images: file name → (caption, figure)."""
    return {
        "roc.png": ("ROC curves", roc_figure(Y, P, labels)),
        "pr.png": ("Precision–recall curves", pr_figure(Y, P, labels)),
        "reliability.png": ("Reliability diagrams (calibration)", reliability_figure(Y, P, labels)),
        "confusion.png": ("Confusion matrices", confusion_figure(Y, P, labels, thresholds)),
    }


def _per_label_rows(result: dict[str, Any], labels: Sequence[str], thresholds: dict[str, float]) -> list[dict]:
    """Per label: counts, the card's threshold and each metric with its bootstrap interval."""
    headline = result.get("headline", {})
    rows = []
    for code in labels:
        row = {
            "label": code,
            "n": result["per_label"][code]["n"],
            "positives": result["per_label"][code]["n_pos"],
            "threshold": thresholds[code],
        }
        for metric in ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1", "ece"):
            row[metric] = _ci(headline.get(f"{code}/{metric}"))
        rows.append(row)
    return rows


def _optional_sections(result: dict[str, Any], subgroups: pd.DataFrame | None) -> list[str]:
    """Subgroup tables, per-site operating points and the promotion gate, where the result has them."""
    sections = []
    if subgroups is not None and len(subgroups):
        sections.append(
            "<h2>Subgroups</h2><p class='note'>Highlighted rows are too small to trust (see the warning column).</p>"
        )
        for attribute, frame in subgroups.groupby("attribute", sort=False):
            sections.append(f"<h3>{html.escape(str(attribute))}</h3>")
            sections.append(_table(frame.drop(columns=["attribute"]), warn_column="warning"))
    if result.get("site_thresholds"):
        rows = [
            {"site": site, "label": code, **{k: v for k, v in entry.items() if k != "target_sensitivity"}}
            for site, per in result["site_thresholds"].items()
            for code, entry in per.items()
        ]
        sections.append("<h2>Per-site operating points</h2>")
        sections.append(_table(pd.DataFrame(rows), warn_column="warning"))
    if result.get("gate"):
        gate = result["gate"]
        verdict = '<span class="pass">PASSED</span>' if gate["passed"] else '<span class="fail">BLOCKED</span>'
        sections.append(f"<h2>Promotion gate: {verdict}</h2>")
        sections.append(_table(pd.DataFrame(gate["checks"])))
    return sections


def _html_page(
    result: dict[str, Any],
    n_cases: int,
    per_label_rows: list[dict],
    captions: dict[str, str],
    subgroups: pd.DataFrame | None,
    title: str,
) -> str:
    """index.html: summary, per-label table, the images (``captions``: file → caption), optional sections."""
    headline = result.get("headline", {})
    summary_rows = [{"metric": key, "value (95% CI)": _ci(entry)} for key, entry in headline.items() if "/" not in key]
    model, data = html.escape(str(result.get("model", ""))), html.escape(str(result.get("data", "")))
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Model <b>{model}</b> on <b>{data}</b>: "
        f"{result.get('n_cases', n_cases)} cases; bootstrap: {result.get('n_boot')} stratified resamples, "
        f"percentile 95% intervals.</p>",
    ]
    sections += [f'<p class="note">{html.escape(note)}</p>' for note in result.get("notes", [])]
    sections += [f'<p class="note">⚠ {html.escape(warning)}</p>' for warning in result.get("warnings", [])]
    sections += ["<h2>Summary</h2>", _table_raw(summary_rows), "<h2>Per label (at the card's thresholds)</h2>"]
    sections.append(_table_raw(per_label_rows))
    for name, caption in captions.items():
        sections.append(f'<h2>{html.escape(caption)}</h2><img src="{name}" alt="{html.escape(caption)}">')
    sections += _optional_sections(result, subgroups)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )


def _write_pdf(path: Path, result: dict[str, Any], figures: list[Figure], title: str) -> None:
    """report.pdf: a text page of the headline numbers, then the figures."""
    headline = result.get("headline", {})
    with PdfPages(path) as document:
        text = Figure(figsize=(8.27, 11.69))
        lines = [
            title,
            f"model: {result.get('model')}",
            f"data: {result.get('data')}",
            f"cases: {result.get('n_cases')}",
            "",
        ]
        lines += [f"{k}: {_plain(v)}" for k, v in headline.items() if "/" not in k]
        lines += [""] + [f"{k}: {_plain(v)}" for k, v in headline.items() if k.endswith("/auroc")]
        text.text(0.05, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=9)
        document.savefig(text)
        for fig in figures:
            document.savefig(fig)


def write_report(
    out_dir: str | Path,
    result: dict[str, Any],
    Y: np.ndarray,
    P: np.ndarray,
    labels: Sequence[str],
    thresholds: dict[str, float],
    subgroups: pd.DataFrame | None = None,
    pdf: bool = False,
    title: str = "Evaluation report",
) -> Path:
    """Write DIR/index.html (+ PNGs, metrics.json, optional report.pdf). Returns the index path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(Y, P, labels, thresholds)
    for name, (_, fig) in figures.items():
        fig.savefig(out / name, dpi=90)
    captions = {name: caption for name, (caption, _) in figures.items()}
    page = _html_page(result, len(Y), _per_label_rows(result, labels, thresholds), captions, subgroups, title)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / "metrics.json").write_text(
        json.dumps(jsonable(result), indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    if pdf:
        _write_pdf(out / "report.pdf", result, [fig for _, fig in figures.values()], title)
    return index


def _plain(entry) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    return f"{entry['value']:.3f} ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"


def _table_raw(rows: list[dict]) -> str:
    """Like _table but cells may already hold HTML (CI formatting)."""
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if isinstance(v, str) else _fmt(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _json_default(obj):
    if isinstance(obj, (np.floating,)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and np.isnan(obj):
        return None
    return str(obj)

"""Online monitoring from the worklist database: how often the AI agrees with signed reads, per site
and finding over time, and whether the inputs (as seen through the AI's scores and the case mix)
drift.

evaluation/ must not import serving/, so the tables are read with plain SQL text queries
(SQLAlchemy Core ``text``), naming only the columns this module needs from ``studies`` and
``corrections``. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from datasets.sources.worklist import findings_to_set
from datasets.vocabulary.age import age_in_years

SIGNED_READS_SQL = text("""
    SELECT c.id AS correction_id, c.study_uid, c.signed_at, c.agree, c.ai_findings, c.final_findings,
           c.model_name, c.model_version, s.site, s.modality, s.patient_sex, s.patient_age, s.ai_read, s.arrived_at
    FROM corrections c JOIN studies s ON s.study_uid = c.study_uid
    WHERE c.id NOT IN (SELECT amends FROM corrections WHERE amends IS NOT NULL)
""")

AI_READS_SQL = text("""
    SELECT study_uid, site, modality, patient_sex, patient_age, arrived_at, ai_read, model_name, model_version
    FROM studies WHERE ai_read IS NOT NULL
""")


def _engine(db: str | Engine) -> Engine:
    return create_engine(db) if isinstance(db, str) else db


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _ai_findings(read: Any) -> dict[str, dict[str, float | bool]]:
    """{code: {"probability", "positive"}} from a stored AI read (or ai_findings snapshot)."""
    read = _json(read)
    if read is None:
        return {}
    items = read.get("findings", read) if isinstance(read, dict) else read
    out = {}
    if isinstance(items, dict):
        for code, value in items.items():
            if isinstance(value, dict):
                out[code] = {
                    "probability": float(value.get("probability", np.nan)),
                    "positive": bool(value.get("positive")),
                }
            else:
                out[code] = {"probability": float(value), "positive": bool(float(value) >= 0.5)}
        return out
    for item in items or []:
        if isinstance(item, dict) and "code" in item:
            p = float(item.get("probability", np.nan))
            positive = item.get("positive")
            if positive is None:
                positive = p >= float(item.get("threshold", 0.5))
            out[str(item["code"])] = {"probability": p, "positive": bool(positive)}
    return out


def _age(value: Any) -> float:
    age = age_in_years(value)
    return float("nan") if age is None else age


def _final_positive(final: Any) -> set[str]:
    found = findings_to_set(_json(final) if isinstance(final, str) else final)
    return {k for k, v in found.items() if v} if isinstance(found, dict) else set(found)


def signed_reads(db: str | Engine) -> pd.DataFrame:
    """One row per (signed study, finding): site, modality, signed_at, ai_positive, ai_probability,
    final_positive. Amended corrections are replaced by their amendment."""
    with _engine(db).connect() as connection:
        rows = connection.execute(SIGNED_READS_SQL).mappings().all()
    records = []
    for row in rows:
        ai = _ai_findings(row["ai_findings"]) or _ai_findings(row["ai_read"])
        final = _final_positive(row["final_findings"])
        for code in sorted(set(ai) | final):
            records.append(
                {
                    "study_uid": row["study_uid"],
                    "site": row["site"],
                    "modality": row["modality"],
                    "signed_at": pd.to_datetime(row["signed_at"], utc=True),
                    "finding": code,
                    "model": f"{row['model_name']}/{row['model_version']}" if row["model_name"] else None,
                    "ai_probability": ai.get(code, {}).get("probability", np.nan),
                    "ai_positive": bool(ai.get(code, {}).get("positive", False)),
                    "final_positive": code in final,
                }
            )
    return pd.DataFrame(
        records,
        columns=[
            "study_uid",
            "site",
            "modality",
            "signed_at",
            "finding",
            "model",
            "ai_probability",
            "ai_positive",
            "final_positive",
        ],
    )


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    n = len(a)
    if n == 0:
        return float("nan")
    po = np.mean(a == b)
    pe = np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b)
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def agreement_table(
    db: str | Engine, freq: str | None = "W", by: Sequence[str] = ("site", "finding"), reads: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Agreement of the AI with signed reads per ``by`` and period (pandas frequency ``freq``:
    D, W, M; None: the whole time as one row per group, without a period column): n, AI positives,
    signed positives, agreement, Cohen's kappa, the AI's sensitivity and PPV against the signed read."""
    reads = signed_reads(db) if reads is None else reads
    keys = [*by, "period"] if freq is not None else list(by)
    columns = [*keys, "n", "ai_pos", "final_pos", "agreement", "kappa", "sensitivity", "ppv"]
    if reads.empty:
        return pd.DataFrame(columns=columns)
    reads = reads.copy()
    if freq is not None:
        reads["period"] = reads["signed_at"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    rows = []
    for key, group in reads.groupby(keys, sort=True):
        a, f = group["ai_positive"].to_numpy(bool), group["final_positive"].to_numpy(bool)
        both = int((a & f).sum())
        rows.append(
            {
                **dict(zip(keys, key)),
                "n": len(group),
                "ai_pos": int(a.sum()),
                "final_pos": int(f.sum()),
                "agreement": float(np.mean(a == f)),
                "kappa": _kappa(a, f),
                "sensitivity": both / f.sum() if f.sum() else float("nan"),
                "ppv": both / a.sum() if a.sum() else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins of the
    reference; 0.1–0.25 moderate, > 0.25 large shift)."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) < 2 or len(current) < 1:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(reference, edges)[0] / len(reference)
    c = np.histogram(current, edges)[0] / len(current)
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(np.sum((c - r) * np.log(c / r)))


def ai_reads(db: str | Engine) -> pd.DataFrame:
    """One row per (study with an AI read, finding): site, arrived_at, probability, age, sex."""
    with _engine(db).connect() as connection:
        rows = connection.execute(AI_READS_SQL).mappings().all()
    records = []
    for row in rows:
        read = _json(row["ai_read"]) or {}
        age = _age(row["patient_age"])
        triage = read.get("triage", {}) if isinstance(read, dict) else {}
        for code, finding in _ai_findings(read).items():
            records.append(
                {
                    "study_uid": row["study_uid"],
                    "site": row["site"],
                    "modality": row["modality"],
                    "arrived_at": pd.to_datetime(row["arrived_at"], utc=True),
                    "finding": code,
                    "probability": finding["probability"],
                    "triage_score": triage.get("score", np.nan),
                    "age": age,
                    "sex": row["patient_sex"],
                }
            )
    return pd.DataFrame(
        records,
        columns=["study_uid", "site", "modality", "arrived_at", "finding", "probability", "triage_score", "age", "sex"],
    )


def drift_table(
    db: str | Engine, freq: str = "W", reference_periods: int = 1, reads: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Input drift per site, finding and period against the site's first ``reference_periods``
    periods: PSI and KS statistic of the AI's probabilities, mean probability, positive rate at
    0.5, mean age and share of female patients."""
    from scipy.stats import ks_2samp  # noqa: PLC0415 - SciPy is heavy: the service imports this module at start

    reads = ai_reads(db) if reads is None else reads
    columns = ["site", "finding", "period", "n", "mean_probability", "psi", "ks", "ks_p", "mean_age", "female_share"]
    if reads.empty:
        return pd.DataFrame(columns=columns)
    reads = reads.copy()
    reads["period"] = reads["arrived_at"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    rows = []
    for (site, code), group in reads.groupby(["site", "finding"], sort=True):
        periods = sorted(group["period"].unique())
        reference = group[group["period"].isin(periods[:reference_periods])]["probability"].to_numpy()
        for period in periods:
            current = group[group["period"] == period]
            p = current["probability"].to_numpy()
            ks = ks_2samp(reference, p) if len(reference) and len(p) else None
            sex = current["sex"].astype(str).str.upper().str[:1]
            rows.append(
                {
                    "site": site,
                    "finding": code,
                    "period": period,
                    "n": len(current),
                    "mean_probability": float(np.nanmean(p)) if len(p) else float("nan"),
                    "psi": psi(reference, p),
                    "ks": float(ks.statistic) if ks else float("nan"),
                    "ks_p": float(ks.pvalue) if ks else float("nan"),
                    "mean_age": float(current["age"].mean()) if current["age"].notna().any() else float("nan"),
                    "female_share": float((sex == "F").mean()) if len(sex) else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def plot_agreement(table: pd.DataFrame, path: str | Path | BinaryIO, metric: str = "agreement") -> Path | BinaryIO:
    """Line chart of ``metric`` over time, one panel per finding, one line per site; written to
    ``path`` (a file name, or a binary file object such as io.BytesIO) as PNG."""
    # A Figure of its own, not pyplot: the service draws this in request threads, and pyplot's figure
    # registry and backend switch are process-global state that is not thread-safe.
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib is heavy: loaded when a chart is drawn

    findings = sorted(table["finding"].unique()) if len(table) else []
    n = max(1, len(findings))
    columns = min(3, n)  # small multiples: up to three findings a row
    rows = -(-n // columns)
    fig = Figure(figsize=(4.2 * columns, 2.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, code in zip(axes.ravel(), findings):
        for site, group in table[table["finding"] == code].groupby("site"):
            ax.plot(group["period"], group[metric], "o-", label=str(site))
        ax.set(title=code, ylim=(-0.05 if metric != "kappa" else -1.05, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    for ax in axes.ravel()[len(findings) :]:
        ax.set_visible(bool(not findings and ax is axes[0, 0]))
    if len(table) and table["period"].nunique() == 1:
        # one period only: centre it instead of letting matplotlib span years around a single date
        only = pd.Timestamp(table["period"].iloc[0])
        axes[0, 0].set_xlim(only - pd.Timedelta(days=7), only + pd.Timedelta(days=7))
    if not findings:
        axes[0, 0].text(0.5, 0.5, "no signed reads yet", ha="center", va="center")
    fig.autofmt_xdate()
    fig.tight_layout()
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, format="png")
    return path

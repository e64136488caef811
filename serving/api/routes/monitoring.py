"""Online model monitoring for data scientists: how often the AI agrees with the signed reads, per
site, finding and period, and whether the inputs drift (as seen through the AI's scores and the
case mix). evaluation/monitoring.py computes the tables from the worklist database; this router
scopes them to the caller's sites, shapes them as JSON and draws the agreement chart.

GET /api/v1/monitoring                 summary per finding, agreement over time, drift over time
GET /api/v1/monitoring/agreement.png   the agreement (or kappa, sensitivity, PPV) chart

Both need a datasci or admin token; a datasci user sees only the sites in the token.
"""

from __future__ import annotations

import io
import math
from typing import Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from evaluation.monitoring import agreement_table, ai_reads, drift_table, plot_agreement, signed_reads
from serving.api.deps import DatasciDep, ServicesDep, log_action
from serving.api.schemas import Monitoring
from serving.auth.tokens import Principal

# Population stability index bands (the credit-scoring convention also used for model inputs).
PSI_MODERATE, PSI_LARGE = 0.1, 0.25
# Rows with fewer cases than this are flagged: their agreement or PSI says little.
MIN_ROWS = 30
Frequency = Literal["D", "W", "M"]
Metric = Literal["agreement", "kappa", "sensitivity", "ppv"]


def _scoped(frame: pd.DataFrame, who: Principal, modality: str | None) -> pd.DataFrame:
    sites = who.site_scope()
    if sites is not None:
        frame = frame[frame["site"].isin(sites)]
    if modality:
        frame = frame[frame["modality"] == modality]
    return frame


def _records(table: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: timestamps as ISO dates, NaN as null."""
    rows = []
    for row in table.to_dict(orient="records"):
        out = {}
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                value = value.date().isoformat()
            elif isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):  # numpy scalars
                value = value.item()
            out[key] = value
        rows.append(out)
    return rows


def _drift_flag(psi: float | None, n: int) -> str | None:
    if psi is None or (isinstance(psi, float) and math.isnan(psi)):
        return None
    if psi >= PSI_LARGE:
        return "large shift" + (" (few cases)" if n < MIN_ROWS else "")
    if psi >= PSI_MODERATE:
        return "moderate shift" + (" (few cases)" if n < MIN_ROWS else "")
    return None


def monitoring_tables(engine, who: Principal, freq: str = "W", modality: str | None = None) -> dict:
    """Summary, agreement and drift tables for ``who``'s sites (the body of GET /api/v1/monitoring)."""
    reads = _scoped(signed_reads(engine), who, modality)
    agreement = agreement_table(engine, freq=freq, reads=reads)
    summary = agreement_table(engine, freq=None, by=("modality", "finding"), reads=reads)
    drift = drift_table(engine, freq=freq, reads=_scoped(ai_reads(engine), who, modality))
    drift_rows = _records(drift)
    for row in drift_rows:
        row["flag"] = _drift_flag(row["psi"], row["n"])
    agreement_rows = _records(agreement)
    for row in agreement_rows:
        row["few_cases"] = row["n"] < MIN_ROWS
    return {
        "freq": freq,
        "modality": modality,
        "sites": who.site_scope(),
        "signed_reads": int(reads["study_uid"].nunique()) if len(reads) else 0,
        "summary": _records(summary),
        "agreement": agreement_rows,
        "drift": drift_rows,
        "bands": {"psi_moderate": PSI_MODERATE, "psi_large": PSI_LARGE, "min_rows": MIN_ROWS},
    }


router = APIRouter(tags=["monitoring"])


@router.get("/api/v1/monitoring", response_model=Monitoring)
def monitoring(
    request: Request,
    svc: ServicesDep,
    who: DatasciDep,
    freq: Frequency = Query("W", description="period: D, W or M"),
    modality: str | None = Query(None, description="e.g. ECG, CR, DX"),
) -> dict:
    body = monitoring_tables(svc.db.engine, who, freq=freq, modality=modality)
    log_action(svc, request, who, "view_monitoring", freq=freq, modality=modality)
    return body


@router.get(
    "/api/v1/monitoring/agreement.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def agreement_png(
    svc: ServicesDep,
    who: DatasciDep,
    freq: Frequency = Query("W"),
    metric: Metric = Query("agreement"),
    modality: str | None = Query(None),
) -> Response:
    reads = _scoped(signed_reads(svc.db.engine), who, modality)
    buffer = io.BytesIO()
    plot_agreement(agreement_table(svc.db.engine, freq=freq, reads=reads), buffer, metric=metric)
    return Response(buffer.getvalue(), media_type="image/png", headers={"cache-control": "no-store"})

"""De-identified exports for the data science team: signed reads as rows, and training data as a
zip of PS3.15 Annex E de-identified objects (serving/results/deid.py)."""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from datasets.vocabulary.age import deidentified_age_band
from serving.api.deps import DatasciDep, ServicesDep, log_action
from serving.api.schemas import SignedReadsExport
from serving.results.deid import export_training
from serving.store import claims
from serving.store.db import as_utc

router = APIRouter(tags=["exports"])


@router.get("/api/v1/exports/signed-reads", response_model=SignedReadsExport)
def export_signed(request: Request, svc: ServicesDep, who: DatasciDep) -> SignedReadsExport:
    rows = []
    for c, s in claims.signed_reads(svc.db, who.site_scope()):
        rows.append(
            {
                "study": svc.tokens.pseudonym("study:" + s.study_uid, 24),
                "reader": svc.tokens.pseudonym("reader:" + c.signed_by, 12),
                "site": s.site,
                "modality": s.modality,
                "patient_sex": s.patient_sex,
                "patient_age_band": deidentified_age_band(s.patient_age),
                "signed_month": as_utc(c.signed_at).strftime("%Y-%m"),
                "agree": c.agree,
                "ai_findings": c.ai_findings,
                "final_findings": c.final_findings,
                "model_name": c.model_name,
                "model_version": c.model_version,
                "amendment": c.amends is not None,
            }
        )
    log_action(svc, request, who, "export", rows=len(rows))
    return SignedReadsExport(rows=rows, count=len(rows), deidentified=True)


@router.get(
    "/api/v1/exports/training.zip", response_class=Response, responses={200: {"content": {"application/zip": {}}}}
)
def export_training_zip(request: Request, svc: ServicesDep, who: DatasciDep) -> Response:
    """Signed studies as training data, de-identified by DICOM PS3.15 Annex E (serving/results/deid.py):
    the objects, manifest.json and labels.csv in one zip. The re-identification keys stay on the
    server."""
    folder = Path(tempfile.mkdtemp(prefix="preread-export-"))
    try:
        summary = export_training(svc, folder, who.site_scope())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log_action(
        svc,
        request,
        who,
        "export_training",
        studies=summary.studies,
        files=summary.files,
        excluded=len(summary.excluded),
    )
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="preread-training.zip"'},
    )

"""The patient's prior study: the latest earlier study of the same patient (``Study.patient_key``, the
site's identity rule) and the same kind (ECG with ECG; CR and DX chest films with each other) that has
an AI read. The comparison itself is serving/reading/priors.py."""

from __future__ import annotations

from sqlalchemy import select

from serving.store.db import Database
from serving.store.schema import Study

CHEST_FILM_MODALITIES = ("CR", "DX")


def find_prior(db: Database, study: Study) -> Study | None:
    """The prior of ``study``, or None (no patient key, or no earlier read study of its kind). Earlier
    means arrived before it; a study signed as read by a doctor but never read by the AI is not a prior
    (its measurements and findings are what a comparison compares)."""
    if not study.patient_key:
        return None
    kinds = ("ECG",) if study.modality == "ECG" else CHEST_FILM_MODALITIES
    query = (
        select(Study)
        .where(
            Study.patient_key == study.patient_key,
            Study.study_uid != study.study_uid,
            Study.modality.in_(kinds),
            Study.read_at.is_not(None),
            Study.arrived_at < study.arrived_at,
        )
        .order_by(Study.arrived_at.desc(), Study.id.desc())
        .limit(5)
    )
    with db.session() as session:
        # a JSON column may hold a JSON null (a withdrawn read): the first one with a read is the prior
        return next((s for s in session.scalars(query) if s.ai_read), None)

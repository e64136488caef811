"""The parts of a chest X-ray ``PreRead`` that are not the model's numbers: where the image came from,
the acceptance verdict as the read's ``quality`` (with what the sender should do about it), and the
read of a film the acceptance check turned away (no findings, no level from findings)."""

from __future__ import annotations

from typing import Any

import numpy as np

from datasets.imaging.acceptance import Acceptance
from datasets.imaging.record import ImageRecord
from datasets.vocabulary import QualityReason
from models.read import PreRead

DISCLAIMER = "Preliminary AI read. Not a diagnosis: a doctor must confirm or correct it."

# What the sender should do about each reason a film was not read.
_ACTIONS = {
    QualityReason.CXR_NOT_CHEST: "send the chest radiograph itself",
    QualityReason.CXR_LATERAL: "send the frontal (PA or AP) film",
    QualityReason.CXR_ROTATED: "send the film upright (check the orientation at the workstation)",
    QualityReason.CXR_INVERTED: "check the grey levels (Photometric Interpretation) at the workstation and resend",
    QualityReason.CXR_PAEDIATRIC: "a doctor reads children's films without the AI",
    QualityReason.CXR_TOO_SMALL: "send the full-resolution image",
}


def json_view(read: PreRead) -> dict[str, Any]:
    """A read without its pixel arrays (``PreRead.pixels``), for JSON storage and API answers.

    Each heatmap entry keeps ``code``, ``name``, ``probability`` and ``shape`` (rows, cols); the
    pictures themselves travel as the Secondary Capture / PNG the caller makes of them.
    """
    return read.to_json()


def source_view(record: ImageRecord | np.ndarray) -> dict[str, Any]:
    """The read's ``source``: the image's rows and columns and, for a DICOM image, its UIDs."""
    pixels = record.pixels if isinstance(record, ImageRecord) else np.asarray(record)
    source: dict[str, Any] = {"rows": int(pixels.shape[0]), "columns": int(pixels.shape[1])}
    if isinstance(record, ImageRecord):
        source.update(
            sop_instance_uid=record.sop_instance_uid,
            study_instance_uid=record.study_instance_uid,
            photometric=record.photometric,
        )
    return source


def quality_view(verdict: Acceptance) -> dict[str, Any]:
    """The acceptance verdict as the read's ``quality`` (models.read.Quality fields)."""
    reasons = [
        {"code": r.code.value, "text": r.text, "evidence": {"source": r.evidence, **r.detail}} for r in verdict.reasons
    ]
    action = None
    if reasons:
        action = (
            "Not read by the AI; a doctor reads it unaided. To have it pre-read: "
            + "; ".join(
                dict.fromkeys(_ACTIONS.get(r.code, "resend a frontal adult chest film") for r in verdict.reasons)
            )
            + "."
        )
    return {"acceptable": verdict.acceptable, "reasons": reasons, "action": action}


def not_read(
    model: dict[str, Any], record: ImageRecord | np.ndarray, verdict: Acceptance, batch_timing: dict[str, Any]
) -> PreRead:
    """A film that failed acceptance: no findings, no level from findings; the reasons say why."""
    return PreRead.model_validate(
        {
            "modality": "CXR",
            "preliminary": True,
            "disclaimer": DISCLAIMER,
            "model": model,
            "findings": [],
            "operating_point": {"site": None, "source": "model card"},
            "quality": quality_view(verdict),
            "triage": {
                "level": "routine",
                "score": 0.0,
                "reasons": ["not read by the AI: " + "; ".join(r.text for r in verdict.reasons)],
            },
            "heatmaps": [],
            "source": source_view(record),
            "timing": dict(batch_timing),
        }
    )

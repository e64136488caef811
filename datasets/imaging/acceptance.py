"""Acceptance before a chest X-ray is read: a frontal (PA/AP) chest radiograph of an adult, the right
way up, with the right polarity, and big enough. A study that fails is not read; the verdict says why.

Header evidence (DICOM attributes, where the sender filled them in):
- Modality / SOP Class: CR, DX (and a plain-image capture of one) are radiographs; CT, MR, US, NM,
  PT, XA, MG ... are not chest films.
- Body Part Examined: CHEST (or blank, common on wrapped images); anything else (HAND, HEAD,
  ABDOMEN ...) is not a chest film. A Patient Species that is not human: not a (human) chest film.
- Image Type containing LOCALIZER / SCOUT: a CT/MR planning image, not a chest film.
- View Position LL / RL / LAT / LATERAL (or a lateral Patient Orientation: a row direction of A or P)
  is a lateral view. Patient Orientation with a first value of H or F says the film is rotated.
- Patient Age (DICOM AS: 045Y, 006M, 010D, 002W) under ``min_age_years`` is a child.
- Rows / Columns under ``min_side_px``: too small for a diagnostic read.

Image evidence (``datasets.imaging.orientation``, a small model fitted on real chest films and their
rotated / inverted copies): rotated by 90/180/270°, inverted grey levels (a MONOCHROME1 image sent as
MONOCHROME2, or an inverted export), and "does not look like a chest film" (CT slices, ultrasound,
photographs). MONOCHROME1 itself is fine: the reader inverts it before anything looks at it.

Not detected from the image (no training data): a lateral view, or a child's film without an age;
a field of view from Pixel Spacing is not used either, because wrapped images often carry a nominal
spacing (NIH's 0.143 mm on a 1024 px film).

numpy only: ingest and the reader use it without loading a network stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets.imaging.orientation import OrientationModel, default_orientation_model
from datasets.imaging.record import ImageRecord
from datasets.vocabulary import QualityReason
from datasets.vocabulary.age import age_in_years
from datasets.vocabulary.sop import ImageSopClass

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", "SC"})
NOT_RADIOGRAPH_MODALITIES = frozenset(
    {
        "CT",
        "MR",
        "US",
        "NM",
        "PT",
        "XA",
        "RF",
        "MG",
        "IO",
        "PX",
        "OP",
        "OCT",
        "ES",
        "XC",
        "SM",
        "ECG",
        "HD",
        "RTIMAGE",
        "BMD",
    }
)
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_LAT", "CHEST PA", "PORT CHEST"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
HUMAN_SPECIES = ("human", "homo sapiens", "homo")
# SOP classes of the images the service stores that are not projection radiographs (the one table:
# datasets.vocabulary.sop.ImageSopClass), plus NM, PET and XA.
NOT_RADIOGRAPH_SOP_CLASSES = frozenset(
    {
        ImageSopClass.CT,
        ImageSopClass.ENHANCED_CT,
        ImageSopClass.MR,
        ImageSopClass.ENHANCED_MR,
        ImageSopClass.US,
        ImageSopClass.US_MULTIFRAME,
        "1.2.840.10008.5.1.4.1.1.20",
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.12.1",
    }
)


@dataclass(frozen=True)
class AcceptancePolicy:
    """The limits of the acceptance check (the model card's intended population)."""

    min_age_years: float = 18.0
    min_side_px: int = 256
    # The image model's class must be at least this likely before its "rotated"/"inverted" is believed.
    min_orientation_probability: float = 0.6


@dataclass(frozen=True)
class Rejection:
    """One reason a film is not read, with the evidence behind it (``header`` or ``image``)."""

    code: QualityReason
    text: str
    evidence: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Acceptance:
    """The verdict: acceptable, or the reasons it is not; ``checked`` says what was looked at."""

    reasons: tuple[Rejection, ...] = ()
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def acceptable(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> list[QualityReason]:
        return [reason.code for reason in self.reasons]


def header_rejections(record: ImageRecord, policy: AcceptancePolicy) -> list[Rejection]:
    """What the DICOM attributes say (absent attributes say nothing)."""
    found = [_not_chest(record), _not_frontal(record), _too_young(record, policy)]
    if min(record.shape) < policy.min_side_px:
        found.append(
            Rejection(
                QualityReason.CXR_TOO_SMALL,
                f"{record.shape[0]} × {record.shape[1]} pixels: at least {policy.min_side_px} a side is needed",
                "header",
                {"rows": record.shape[0], "columns": record.shape[1]},
            )
        )
    return [rejection for rejection in found if rejection is not None]


def _not_chest(record: ImageRecord) -> Rejection | None:
    """Not a radiograph, another body part, a localizer, or not a human patient (the first that applies)."""
    modality = (record.modality or "").upper()
    body_part = (record.body_part or "").upper().strip()
    image_type = [str(v).upper() for v in record.meta.get("image_type") or []]
    species = str(record.meta.get("species") or "").strip().lower()
    if modality in NOT_RADIOGRAPH_MODALITIES or record.sop_class_uid in NOT_RADIOGRAPH_SOP_CLASSES:
        return Rejection(
            QualityReason.CXR_NOT_CHEST,
            f"not a radiograph: modality {modality or '?'}",
            "header",
            {"modality": modality, "sop_class_uid": record.sop_class_uid},
        )
    if body_part and body_part not in CHEST_BODY_PARTS:
        return Rejection(
            QualityReason.CXR_NOT_CHEST,
            f"body part examined is {body_part}, not the chest",
            "header",
            {"body_part": body_part},
        )
    if {"LOCALIZER", "SCOUT"} & set(image_type):
        return Rejection(
            QualityReason.CXR_NOT_CHEST,
            "a localizer (scout) image, not a chest film",
            "header",
            {"image_type": image_type},
        )
    if species and not species.startswith(HUMAN_SPECIES):
        return Rejection(
            QualityReason.CXR_NOT_CHEST, f"not a human patient (species: {species})", "header", {"species": species}
        )
    return None


def _not_frontal(record: ImageRecord) -> Rejection | None:
    """A lateral view, or a film rotated by 90° (patient orientation says so)."""
    view = (record.view_position or "").upper().strip()
    orientation = [str(v).upper() for v in record.meta.get("patient_orientation") or []]
    if view in LATERAL_VIEWS or (len(orientation) == 2 and orientation[0][:1] in ("A", "P")):
        return Rejection(
            QualityReason.CXR_LATERAL,
            "a lateral view: only frontal (PA/AP) films are read",
            "header",
            {"view_position": view, "patient_orientation": orientation},
        )
    if len(orientation) == 2 and orientation[0][:1] in ("H", "F"):
        return Rejection(
            QualityReason.CXR_ROTATED,
            f"rotated (patient orientation {'/'.join(orientation)})",
            "header",
            {"patient_orientation": orientation},
        )
    return None


def _too_young(record: ImageRecord, policy: AcceptancePolicy) -> Rejection | None:
    """A child under the policy's minimum age (the model reads adults)."""
    years = age_in_years(record.patient.get("age"))
    if years is None or years >= policy.min_age_years:
        return None
    return Rejection(
        QualityReason.CXR_PAEDIATRIC,
        f"a child ({years:.1f} years): the model reads adults ({policy.min_age_years:g}+)",
        "header",
        {"age_years": round(years, 2)},
    )


def image_rejections(
    record: ImageRecord, policy: AcceptancePolicy, model: OrientationModel | None
) -> tuple[list[Rejection], dict[str, Any]]:
    """What the pixels say (``datasets.imaging.orientation``)."""
    model = model or default_orientation_model()
    evidence = model.evidence(record.pixels)
    seen = {
        "rotation": evidence.rotation,
        "inverted": evidence.inverted,
        "probability": round(evidence.probability, 3),
        "chest_similarity": round(evidence.chest_similarity, 3),
        "chest_cutoff": round(evidence.chest_cutoff, 3),
    }
    if not evidence.looks_like_chest:
        return [
            Rejection(QualityReason.CXR_NOT_CHEST, "the image does not look like a chest radiograph", "image", seen)
        ], seen
    out: list[Rejection] = []
    if evidence.probability >= policy.min_orientation_probability:
        if evidence.rotation:
            out.append(
                Rejection(QualityReason.CXR_ROTATED, f"the film looks rotated by {evidence.rotation}°", "image", seen)
            )
        if evidence.inverted:
            out.append(
                Rejection(
                    QualityReason.CXR_INVERTED,
                    f"grey levels look inverted (sent as {record.photometric})",
                    "image",
                    seen,
                )
            )
    return out, seen


def check_chest_film(
    record: ImageRecord, policy: AcceptancePolicy | None = None, model: OrientationModel | None = None
) -> Acceptance:
    """The acceptance verdict for one image: header evidence, then image evidence (skipped when the
    header already says it is no chest film, or the image is too small to judge)."""
    policy = policy or AcceptancePolicy()
    reasons = header_rejections(record, policy)
    checked: dict[str, Any] = {
        "header": {
            "modality": record.modality,
            "body_part": record.body_part,
            "view_position": record.view_position,
            "age": record.patient.get("age"),
            "photometric": record.photometric,
            "shape": list(record.shape),
        }
    }
    decided = {QualityReason.CXR_NOT_CHEST, QualityReason.CXR_TOO_SMALL} & {r.code for r in reasons}
    if not decided and min(record.shape) >= 16:
        image, checked["image"] = image_rejections(record, policy, model)
        have = {r.code for r in reasons}
        reasons += [r for r in image if r.code not in have]
    return Acceptance(tuple(reasons), checked)

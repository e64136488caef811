"""The chest X-ray label set: the 14 ChestX-ray14 findings plus "any abnormality".

Each label has a stable code (used in APIs, model outputs, configs), a display name, the
ChestX-ray14 name (as in NIH CSVs and folder names) and a coded concept for DICOM SR. SNOMED CT
codes are given only where the concept is unambiguous for what the label means on a chest
radiograph; the rest use the private scheme ``99PREREAD`` (code value = our code, shortened to
the 16 characters a DICOM Code Value holds), whose meaning says what it is. The network's output
order is ``CXR_LABELS`` order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PRIVATE_SCHEME = "99PREREAD"
PRIVATE_SCHEME_NAME = "preread private codes"


@dataclass(frozen=True)
class Coding:
    value: str
    scheme: str  # DICOM coding scheme designator: SCT, RADLEX, 99PREREAD ...
    meaning: str


@dataclass(frozen=True)
class CxrLabel:
    code: str  # stable id in APIs, outputs and configs
    name: str  # what a doctor reads
    nih_name: str  # ChestX-ray14 spelling ("" for labels NIH does not have)
    coding: Coding  # concept for DICOM SR / FHIR


def _sct(value: str, meaning: str) -> Coding:
    return Coding(value, "SCT", meaning)


def _private(code: str, meaning: str) -> Coding:
    return Coding(code, PRIVATE_SCHEME, meaning)


ANY_ABNORMALITY = "ANY"

CXR_LABELS: tuple[CxrLabel, ...] = (
    CxrLabel("ATELECTASIS", "Atelectasis", "Atelectasis", _sct("46621007", "Atelectasis")),
    CxrLabel("CARDIOMEGALY", "Cardiomegaly", "Cardiomegaly", _sct("8186001", "Cardiomegaly")),
    CxrLabel("EFFUSION", "Pleural effusion", "Effusion", _sct("60046008", "Pleural effusion")),
    # "Infiltration" in ChestX-ray14 is a loose text-mined umbrella term; no SNOMED concept matches it.
    CxrLabel(
        "INFILTRATION",
        "Pulmonary infiltrate",
        "Infiltration",
        _private("INFILTRATION", "Pulmonary infiltrate (ChestX-ray14 'Infiltration')"),
    ),
    CxrLabel("MASS", "Lung mass", "Mass", _private("MASS", "Lung mass (> 3 cm)")),
    CxrLabel("NODULE", "Lung nodule", "Nodule", _private("NODULE", "Lung nodule (<= 3 cm)")),
    CxrLabel("PNEUMONIA", "Pneumonia", "Pneumonia", _sct("233604007", "Pneumonia")),
    CxrLabel("PNEUMOTHORAX", "Pneumothorax", "Pneumothorax", _sct("36118008", "Pneumothorax")),
    CxrLabel("CONSOLIDATION", "Consolidation", "Consolidation", _sct("95436008", "Lung consolidation")),
    CxrLabel("EDEMA", "Pulmonary edema", "Edema", _sct("19242006", "Pulmonary edema")),
    CxrLabel("EMPHYSEMA", "Emphysema", "Emphysema", _sct("87433001", "Pulmonary emphysema")),
    CxrLabel("FIBROSIS", "Pulmonary fibrosis", "Fibrosis", _sct("51615001", "Fibrosis of lung")),
    CxrLabel(
        "PLEURAL_THICKENING",
        "Pleural thickening",
        "Pleural_Thickening",
        _private("PLEURAL_THICK", "Pleural thickening"),
    ),
    # Mostly hiatus hernia in ChestX-ray14, but not only; keep the label's own looser meaning.
    CxrLabel("HERNIA", "Hernia", "Hernia", _private("HERNIA", "Hernia seen on chest radiograph")),
    CxrLabel(
        ANY_ABNORMALITY, "Any abnormality", "", _private(ANY_ABNORMALITY, "Any abnormal finding on chest radiograph")
    ),
)

CXR_LABEL_CODES: tuple[str, ...] = tuple(label.code for label in CXR_LABELS)
CXR_LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in CXR_LABELS)
NUM_CXR_LABELS = len(CXR_LABELS)
ANY_INDEX = CXR_LABEL_CODES.index(ANY_ABNORMALITY)

_BY_CODE = {label.code: label for label in CXR_LABELS}
_BY_NIH_NAME = {label.nih_name.lower(): label for label in CXR_LABELS if label.nih_name}


def label_by_code(code: str) -> CxrLabel:
    try:
        return _BY_CODE[code]
    except KeyError:
        raise KeyError(f"unknown chest X-ray label code {code!r}; known: {', '.join(CXR_LABEL_CODES)}") from None


def label_index(code: str) -> int:
    return CXR_LABEL_CODES.index(label_by_code(code).code)


def codes_from_nih(finding_labels: str | Iterable[str]) -> list[str]:
    """NIH ``Finding Labels`` (``"Cardiomegaly|Effusion"``, ``"No Finding"``, or a list) → our codes.

    ``ANY`` is added when at least one finding is present. Unknown names raise ValueError, so a
    typo in a CSV cannot silently become "normal".
    """
    names = finding_labels.split("|") if isinstance(finding_labels, str) else list(finding_labels)
    codes: set[str] = set()
    for raw in names:
        name = raw.strip()
        if not name or name.lower() == "no finding":
            continue
        label = _BY_NIH_NAME.get(name.lower()) or _BY_NIH_NAME.get(name.lower().replace(" ", "_"))
        if label is None:
            raise ValueError(f"unknown ChestX-ray14 finding {name!r}")
        codes.add(label.code)
    if codes:
        codes.add(ANY_ABNORMALITY)
    return [code for code in CXR_LABEL_CODES if code in codes]


def multi_hot(codes: Iterable[str]) -> np.ndarray:
    """Codes → float32 target vector in ``CXR_LABELS`` order (``ANY`` set if any finding is)."""
    vector = np.zeros(NUM_CXR_LABELS, dtype=np.float32)
    for code in codes:
        vector[label_index(code)] = 1.0
    if vector.sum() > 0:
        vector[ANY_INDEX] = 1.0
    return vector

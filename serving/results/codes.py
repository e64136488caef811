"""Coded concepts used in preread's result objects.

Standard codes where DICOM/SNOMED has one that means exactly what we say; the rest in our private
scheme ``99PREREAD`` (declared in each SR's Coding Scheme Identification Sequence).
"""

from __future__ import annotations

from typing import Any

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from datasets.vocabulary import TriageLevel
from datasets.vocabulary.cxr_labels import PRIVATE_SCHEME, PRIVATE_SCHEME_NAME, Coding, label_by_code

PRESENT = codes.SCT.Present  # SCT 52101004
ABSENT = codes.SCT.Absent  # SCT 272519000 (the DICOM code for "Absent")
PROBABILITY = codes.DCM.Probability  # DCM 122157
THRESHOLD = CodedConcept("122411", "DCM", "Threshold Value")
NO_UNITS = codes.UCUM.NoUnits  # UCUM "1": probabilities and scores are unitless
DEVICE = codes.DCM.Device
ARTIFICIAL_INTELLIGENCE = codes.DCM.ArtificialIntelligence  # DCM 123110, algorithm family
REPORT_TITLE = codes.DCM.ImagingMeasurementReport  # DCM 126000 (CID 7021)
CHEST_XRAY_PROCEDURE = CodedConcept("399208008", "SCT", "Plain chest X-ray")
SOURCE_IMAGE_FOR_PROCESSING = codes.DCM.SourceImageForImageProcessingOperation  # DCM 121322

TRIAGE = CodedConcept("TRIAGE", PRIVATE_SCHEME, "AI triage")
TRIAGE_LEVEL = CodedConcept("TRIAGE_LEVEL", PRIVATE_SCHEME, "AI triage level")
TRIAGE_SCORE = CodedConcept("TRIAGE_SCORE", PRIVATE_SCHEME, "AI triage score")
TRIAGE_LEVELS: dict[str, CodedConcept] = {
    TriageLevel.CRITICAL: CodedConcept("CRITICAL", PRIVATE_SCHEME, "Critical: read now"),
    TriageLevel.URGENT: CodedConcept("URGENT", PRIVATE_SCHEME, "Urgent: read within the hour"),
    TriageLevel.ROUTINE: CodedConcept("ROUTINE", PRIVATE_SCHEME, "Routine"),
}
TRIAGE_LEVEL_BY_VALUE = {concept.value: level for level, concept in TRIAGE_LEVELS.items()}
TRIAGE_TRACKING_ID = "TRIAGE"


def concept(coding: Coding | CodedConcept | dict[str, Any]) -> CodedConcept:
    if isinstance(coding, CodedConcept):
        return coding
    if isinstance(coding, Coding):
        return CodedConcept(coding.value, coding.scheme, coding.meaning)
    return CodedConcept(str(coding["value"]), str(coding["scheme"]), str(coding["meaning"]))


def finding_concept(finding: dict[str, Any]) -> CodedConcept:
    """The concept for a finding dict: its own ``coding`` if given, else the chest X-ray label's,
    else a private code made from its code and name."""
    if finding.get("coding"):
        return concept(finding["coding"])
    code = str(finding["code"])
    try:
        return concept(label_by_code(code).coding)
    except KeyError:
        return CodedConcept(code, PRIVATE_SCHEME, str(finding.get("name") or code))


def coding_scheme_identification() -> Dataset:
    """Coding Scheme Identification item declaring ``99PREREAD`` (PS3.3 C.12.1.1.4)."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "preread"
    return item

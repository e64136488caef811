"""FHIR R4 DiagnosticReport for a study: preliminary (AI read) → final (signed) → amended.

Findings and measurements are contained Observations referenced from ``result``. Every resource is
built through the fhir.resources R4B models (R4-compatible for DiagnosticReport and Observation), so a
report that does not validate is an error here, not at the receiving EHR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from datasets.vocabulary import i18n
from datasets.vocabulary.ecg_measurements import EcgMeasurement
from models.read import Finding, PreRead
from serving.store.db import as_utc
from serving.store.schema import Study

LOINC = "http://loinc.org"
REPORT_CODES = {
    "ECG": {"system": LOINC, "code": "11524-6", "display": "EKG study"},
    "CR": {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"},
    "DX": {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"},
}
CATEGORY = {
    "ECG": {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "EC", "display": "Electrocardiac"},
    "default": {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"},
}
MEASUREMENTS: dict[EcgMeasurement, tuple[str, str, str]] = {
    # measurement → (LOINC code, LOINC display, UCUM unit). The codes are those HL7 examples use for a
    # cart's global measurements (each with a valid LOINC check digit). P duration and QTc by Fridericia
    # have no code here: uncoded beats a guessed code, so they go out with their name as text only.
    EcgMeasurement.HEART_RATE: ("8867-4", "Heart rate", "/min"),
    EcgMeasurement.RR_INTERVAL: ("8637-1", "R-R interval by EKG", "ms"),
    EcgMeasurement.PR_INTERVAL: ("8625-6", "P-R Interval", "ms"),
    EcgMeasurement.QRS_DURATION: ("8633-0", "QRS duration", "ms"),
    EcgMeasurement.QT_INTERVAL: ("8634-8", "Q-T interval", "ms"),
    EcgMeasurement.QTC_BAZETT: ("8636-3", "Q-T interval corrected", "ms"),
    EcgMeasurement.P_AXIS: ("8626-4", "P wave axis", "deg"),
    EcgMeasurement.QRS_AXIS: ("8632-2", "QRS axis", "deg"),
    EcgMeasurement.T_AXIS: ("8638-9", "T wave axis", "deg"),
}
FINDING_SYSTEM = "urn:preread:finding"


def _status(study: Study) -> str:
    return study.report_status if study.report_status in ("final", "amended") else "preliminary"


def diagnostic_report(study: Study, base_url: str = "", locale: str | None = None) -> DiagnosticReport:
    """``locale`` (the deployment's): finding names and the preliminary conclusion in that language,
    ``language`` set to match; the signed conclusion is the reader's impression as written. A signed
    report is presented as its PDF (``GET /api/v1/studies/{uid}/report.pdf``)."""
    status = _status(study)
    read = study.pre_read
    final = study.final_report or {}
    name, version = (read.model.name, read.model.version) if read else (study.model_name, study.model_version)
    method = {"text": f"AI pre-read {name} v{version}"}
    kind = "ECG" if study.modality == "ECG" else "CXR"

    def shown(f: Finding) -> str:
        return i18n.finding_name(locale, kind, f.code, f.name or f.code) if locale else (f.name or f.code)

    contained = _finding_observations(read, status, final.get("findings") or {}, method, shown)
    contained += _measurement_observations(read, status, first_id=len(contained))
    issued = (
        as_utc(study.signed_at)
        if status != "preliminary" and study.signed_at
        else as_utc(study.read_at or study.arrived_at)
    )
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": study.study_uid.replace(".", "-")[:64],
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}],
        "status": status,
        "category": [{"coding": [CATEGORY.get(study.modality, CATEGORY["default"])]}],
        "code": {
            "coding": [
                REPORT_CODES.get(
                    study.modality, {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
                )
            ]
        },
        "subject": {"display": f"patient {study.patient_id or 'unknown'} at site {study.site}"},
        "effectiveDateTime": as_utc(study.arrived_at).isoformat(),
        "issued": issued.isoformat(),
        "contained": [o.model_dump(mode="json", exclude_none=True) for o in contained],
        "result": [{"reference": f"#{o.id}"} for o in contained],
        "conclusion": _conclusion(read, status, final, locale, shown) or None,
    }
    if status != "preliminary" and study.signed_by:
        report["resultsInterpreter"] = [{"display": study.signed_by}]
    else:
        report["performer"] = [{"display": method["text"]}]
    if locale:
        report["language"] = i18n.bcp47(locale)
    if base_url:
        report["presentedForm"] = _presented_forms(study, status, base_url, locale, issued.isoformat())
    return DiagnosticReport.model_validate({k: v for k, v in report.items() if v is not None})


def _finding_observations(
    read: PreRead | None,
    status: str,
    final_findings: dict[str, bool],
    method: dict[str, str],
    shown: Callable[[Finding], str],
) -> list[Observation]:
    """One Observation per finding of the read: positive as the reader signed it (once signed) or as the AI
    called it, with the AI's probability as a component."""
    observations = []
    for i, f in enumerate(read.findings if read else []):
        positive = final_findings.get(f.code, f.positive) if status != "preliminary" else f.positive
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"finding-{i}",
            "status": status,
            "code": {"coding": [{"system": FINDING_SYSTEM, "code": f.code, "display": shown(f)}], "text": shown(f)},
            "valueBoolean": positive,
            "component": [
                {
                    "code": {"text": "AI probability"},
                    "valueQuantity": {
                        "value": float(f.probability),
                        "unit": "1",
                        "system": "http://unitsofmeasure.org",
                        "code": "1",
                    },
                }
            ],
        }
        if status == "preliminary":
            obs["method"] = method
        observations.append(Observation.model_validate(obs))
    return observations


def _measurement_observations(read: PreRead | None, status: str, first_id: int) -> list[Observation]:
    """One Observation per numeric measurement of the read (LOINC-coded where MEASUREMENTS knows the key),
    numbered on from ``first_id``."""
    observations = []
    for key, value in (read.measurements if read else {}).items():
        if not isinstance(value, (int, float)) or value != value:  # skip None / NaN
            continue
        code, display, unit = MEASUREMENTS.get(key, (None, key, None))
        coding = [{"system": LOINC, "code": code, "display": display}] if code else []
        quantity: dict[str, Any] = {"value": round(float(value), 2)}
        if unit:
            quantity.update(unit=unit, system="http://unitsofmeasure.org", code=unit)
        observations.append(
            Observation.model_validate(
                {
                    "resourceType": "Observation",
                    "id": f"measurement-{first_id + len(observations)}",
                    "status": status,
                    "code": {"coding": coding, "text": display} if coding else {"text": display},
                    "valueQuantity": quantity,
                }
            )
        )
    return observations


def _conclusion(
    read: PreRead | None, status: str, final: dict[str, Any], locale: str | None, shown: Callable[[Finding], str]
) -> str | None:
    """The reader's impression once signed; before that, the AI's positive findings in words."""
    if status != "preliminary":
        return final.get("impression")
    if read and read.findings:
        called = i18n.translate(locale, "report", "list_separator").join(
            f"{shown(f)} ({f.probability:.2f})" for f in read.findings if f.positive
        )
        return i18n.translate(
            locale,
            "report",
            "fhir.preliminary",
            findings=called or i18n.translate(locale, "report", "fhir.no_positive"),
        )
    return i18n.translate(locale, "report", "fhir.no_read")


def _presented_forms(study: Study, status: str, base_url: str, locale: str | None, issued: str) -> list[dict[str, Any]]:
    """Where the report can be seen: the study with its AI read, and once signed the printable PDF first
    (what a receiving EHR shows)."""
    forms: list[dict[str, Any]] = [
        {
            "contentType": "application/json",
            "title": "Study with AI read",
            "url": f"{base_url}/api/v1/studies/{study.study_uid}",
        }
    ]
    if status != "preliminary":
        forms.insert(
            0,
            {
                "contentType": "application/pdf",
                "language": i18n.bcp47(locale),
                "url": f"{base_url}/api/v1/studies/{study.study_uid}/report.pdf",
                "title": i18n.translate(locale, "report", "fhir.pdf_title"),
                "creation": issued,
            },
        )
    return forms

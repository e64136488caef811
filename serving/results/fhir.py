"""FHIR R4 DiagnosticReport for a study: preliminary (AI read) → final (signed) → amended.

Findings and measurements are contained Observations referenced from ``result``. Every resource is
built through the fhir.resources R4B models (R4-compatible for DiagnosticReport and Observation), so a
report that does not validate is an error here, not at the receiving EHR.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

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
MEASUREMENTS = {  # measurement key → (LOINC code, display, UCUM unit)
    "heart_rate_bpm": ("8867-4", "Heart rate", "/min"),
    "qrs_duration_ms": ("8633-3", "QRS duration", "ms"),
    "pr_interval_ms": ("8625-6", "P-R Interval", "ms"),
    "qt_interval_ms": ("8634-1", "Q-T interval", "ms"),
    "qtc_ms": ("8636-6", "Q-T interval corrected", "ms"),
}
FINDING_SYSTEM = "urn:preread:finding"


def _status(study: Study) -> str:
    return study.report_status if study.report_status in ("final", "amended") else "preliminary"


def diagnostic_report(study: Study, base_url: str = "") -> DiagnosticReport:
    status = _status(study)
    read = study.pre_read
    findings = read.findings if read else []
    final = study.final_report or {}
    final_findings: dict[str, bool] = final.get("findings") or {}
    name, version = (read.model.name, read.model.version) if read else (study.model_name, study.model_version)
    method = {"text": f"AI pre-read {name} v{version}"}
    contained: list[Observation] = []

    for i, f in enumerate(findings):
        positive = final_findings.get(f.code, f.positive) if status != "preliminary" else f.positive
        obs: dict[str, Any] = {
            "resourceType": "Observation", "id": f"finding-{i}", "status": status,
            "code": {"coding": [{"system": FINDING_SYSTEM, "code": f.code, "display": f.name or f.code}],
                     "text": f.name or f.code},
            "valueBoolean": positive,
            "component": [{
                "code": {"text": "AI probability"},
                "valueQuantity": {"value": float(f.probability), "unit": "1",
                                  "system": "http://unitsofmeasure.org", "code": "1"},
            }],
        }
        if status == "preliminary":
            obs["method"] = method
        contained.append(Observation.model_validate(obs))

    for key, value in (read.measurements if read else {}).items():
        if not isinstance(value, (int, float)) or value != value:  # skip None / NaN
            continue
        code, display, unit = MEASUREMENTS.get(key, (None, key, None))
        coding = [{"system": LOINC, "code": code, "display": display}] if code else []
        quantity: dict[str, Any] = {"value": round(float(value), 2)}
        if unit:
            quantity.update(unit=unit, system="http://unitsofmeasure.org", code=unit)
        contained.append(Observation.model_validate({
            "resourceType": "Observation", "id": f"measurement-{len(contained)}", "status": status,
            "code": {"coding": coding, "text": display} if coding else {"text": display},
            "valueQuantity": quantity,
        }))

    conclusion = final.get("impression") if status != "preliminary" else (
        "Preliminary AI read, not reviewed by a doctor: " + ", ".join(
            f"{f.name or f.code} ({f.probability:.2f})" for f in findings if f.positive
        ) if findings else "Preliminary: no AI read available")
    issued = as_utc(study.signed_at) if status != "preliminary" and study.signed_at else as_utc(study.read_at or study.arrived_at)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": study.study_uid.replace(".", "-")[:64],
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}],
        "status": status,
        "category": [{"coding": [CATEGORY.get(study.modality, CATEGORY["default"])]}],
        "code": {"coding": [REPORT_CODES.get(study.modality, {"system": LOINC, "code": "18748-4",
                                                              "display": "Diagnostic imaging study"})]},
        "subject": {"display": f"patient {study.patient_id or 'unknown'} at site {study.site}"},
        "effectiveDateTime": as_utc(study.arrived_at).isoformat(),
        "issued": issued.isoformat(),
        "contained": [o.model_dump(mode="json", exclude_none=True) for o in contained],
        "result": [{"reference": f"#{o.id}"} for o in contained],
        "conclusion": conclusion or None,
    }
    if status != "preliminary" and study.signed_by:
        report["resultsInterpreter"] = [{"display": study.signed_by}]
    else:
        report["performer"] = [{"display": method["text"]}]
    if base_url:
        report["presentedForm"] = [{"contentType": "application/json", "url": f"{base_url}/api/v1/studies/{study.study_uid}",
                                    "title": "Study with AI read"}]
    return DiagnosticReport.model_validate({k: v for k, v in report.items() if v is not None})

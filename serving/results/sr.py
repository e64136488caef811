"""The AI read as a DICOM Structured Report (TID 1500 Measurement Report, Comprehensive 3D SR).

Content tree (root: CONTAINER "Imaging Measurement Report", DCM 126000):

- Language, observation context: the model as a *device* observer (Device Observer UID derived
  from model name + version, so every report of one model version names the same device; name,
  manufacturer, model name = model name, serial number = model version).
- Procedure reported: SCT 399208008 "Plain chest X-ray" (overridable).
- Image library: the source image(s).
- Imaging measurements: one TID 1501 "Measurement Group" per finding, image-level (the read is of
  the whole image, there is no ROI), each with
    - Tracking Identifier = our finding code (``PNEUMONIA``...), Tracking UID (new),
    - Finding = the finding's concept (SNOMED CT where one fits, else ``99PREREAD``),
    - Algorithm Name / Version (+ parameters, e.g. that the model is a demo), which apply to
      everything in the group,
    - Source image(s) for the group,
    - one Qualitative Evaluation: finding concept = Present (SCT 52101004) / Absent (SCT 272519000),
      i.e. the thresholded call,
    - Measurement "Probability" (DCM 122157, unit UCUM "1") = the model's probability, and
      Measurement "Threshold Value" (DCM 122411, unit "1") = the decision threshold used.
  TID 1501 allows any number of qualitative evaluations and measurements per group, and a NUM
  item is the clean place for a number (a CODE evaluation cannot carry one), hence this split.
- One more group for the triage: Tracking Identifier ``TRIAGE``, Finding ``99PREREAD TRIAGE``,
  Qualitative Evaluation "AI triage level" = CRITICAL/URGENT/ROUTINE, Measurement "AI triage
  score" (unit "1").

Document: Completion Flag COMPLETE, Verification Flag UNVERIFIED (no human has signed it),
Preliminary Flag PRELIMINARY, same Study Instance UID and Patient/Study modules as the source
(highdicom copies them from the evidence), new Series Instance UID.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from datasets.vocabulary import i18n
from datasets.vocabulary.cxr_labels import label_by_code
from serving.results import codes

DEFAULT_SR_SERIES_NUMBER = 900
DEFAULT_MANUFACTURER = "preread"
DEMO_PARAMETER = "demo model: not for clinical use"


def device_uid(model_name: str, model_version: str) -> str:
    """The Device Observer UID of one model version (stable across processes and machines)."""
    return generate_uid(entropy_srcs=["preread model", str(model_name), str(model_version)])


def model_identity_fields(model: dict[str, Any]) -> tuple[str, str, str, bool]:
    try:
        name, version = str(model["name"]), str(model["version"])
    except KeyError as exc:
        raise ValueError(f"model needs 'name' and 'version' (missing {exc})") from None
    return name, version, str(model.get("manufacturer") or DEFAULT_MANUFACTURER), bool(model.get("demo", False))


def algorithm_identification(model: dict[str, Any]) -> hd.sr.AlgorithmIdentification:
    name, version, _, demo = model_identity_fields(model)
    return hd.sr.AlgorithmIdentification(name=name, version=version, parameters=[DEMO_PARAMETER] if demo else None)


def _check_sources(source_datasets: Sequence[Dataset]) -> str:
    if not source_datasets:
        raise ValueError("at least one source dataset is needed (the image the AI read)")
    studies = {str(ds.StudyInstanceUID) for ds in source_datasets}
    if len(studies) != 1:
        raise ValueError(f"source datasets belong to several studies: {sorted(studies)}")
    for ds in source_datasets:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
            if not ds.get(keyword):
                raise ValueError(f"source dataset lacks {keyword}")
    return studies.pop()


def _check_finding(finding: dict[str, Any]) -> dict[str, Any]:
    if "code" not in finding:
        raise ValueError(f"finding without 'code': {finding}")
    probability = float(finding["probability"])
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} of {finding['code']} is outside [0, 1]")
    threshold = finding.get("threshold")
    positive = finding.get("positive")
    if positive is None:
        if threshold is None:
            raise ValueError(f"finding {finding['code']} needs 'positive' or a 'threshold'")
        positive = probability >= float(threshold)
    return {
        **finding,
        "probability": probability,
        "positive": bool(positive),
        "threshold": None if threshold is None else float(threshold),
    }


def _check_findings(findings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each finding checked (``_check_finding``), and no code twice."""
    checked = [_check_finding(dict(finding)) for finding in findings]
    codes_seen = [finding["code"] for finding in checked]
    if len(set(codes_seen)) != len(codes_seen):
        raise ValueError(f"duplicate finding codes: {codes_seen}")
    return checked


def _finding_group(
    finding: dict[str, Any],
    algorithm: hd.sr.AlgorithmIdentification,
    source_images: list[hd.sr.SourceImageForMeasurementGroup],
    locale: str | None = None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    finding_concept = codes.finding_concept(finding)
    if locale is not None:  # the same code; its meaning in the report's language
        finding_concept = hd.sr.CodedConcept(
            value=finding_concept.value,
            scheme_designator=finding_concept.scheme_designator,
            meaning=i18n.finding_name(locale, "CXR", str(finding["code"]), finding_concept.meaning),
        )
    measurements = [hd.sr.Measurement(name=codes.PROBABILITY, value=finding["probability"], unit=codes.NO_UNITS)]
    if finding["threshold"] is not None:
        measurements.append(hd.sr.Measurement(name=codes.THRESHOLD, value=finding["threshold"], unit=codes.NO_UNITS))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=str(finding["code"])),
        finding_type=finding_concept,
        algorithm_id=algorithm,
        source_images=source_images,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=finding_concept, value=codes.PRESENT if finding["positive"] else codes.ABSENT
            )
        ],
        measurements=measurements,
    )


def _triage_group(
    triage: dict[str, Any],
    algorithm: hd.sr.AlgorithmIdentification,
    source_images: list[hd.sr.SourceImageForMeasurementGroup],
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    level = str(triage["level"]).lower()
    if level not in codes.TRIAGE_LEVELS:
        raise ValueError(f"triage level {triage['level']!r} is not one of {', '.join(codes.TRIAGE_LEVELS)}")
    score = float(triage["score"])
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"triage score {score} is outside [0, 1]")
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=codes.TRIAGE_TRACKING_ID),
        finding_type=codes.TRIAGE,
        algorithm_id=algorithm,
        source_images=source_images,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.TRIAGE_LEVEL, value=codes.TRIAGE_LEVELS[level])
        ],
        measurements=[hd.sr.Measurement(name=codes.TRIAGE_SCORE, value=score, unit=codes.NO_UNITS)],
    )


def _observer_context(name: str, version: str, manufacturer: str) -> hd.sr.ObserverContext:
    """The model as the report's device observer (one Device Observer UID per model version)."""
    return hd.sr.ObserverContext(
        observer_type=codes.DEVICE,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(name, version),
            name=name,
            manufacturer_name=manufacturer,
            model_name=name,
            serial_number=version,
        ),
    )


def _measurement_report(
    source_datasets: Sequence[Dataset],
    observer: hd.sr.ObserverContext,
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations],
    procedure_reported: hd.sr.CodedConcept,
) -> hd.sr.MeasurementReport:
    """The TID 1500 content tree, with the image library when highdicom can describe the sources."""
    report_arguments: dict[str, Any] = dict(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure_reported,
        imaging_measurements=groups,
        title=codes.REPORT_TITLE,
    )
    try:
        return hd.sr.MeasurementReport(**report_arguments, referenced_images=list(source_datasets))
    except (AttributeError, ValueError, TypeError):
        # highdicom's image library descriptors need attributes real senders omit (e.g. a CR
        # without Imager Pixel Spacing). The library is optional in TID 1500 and every group
        # references its source image anyway, so we go without it rather than fail the read.
        return hd.sr.MeasurementReport(**report_arguments)


def _sr_document(
    source_datasets: Sequence[Dataset], report: hd.sr.MeasurementReport, **document: Any
) -> hd.sr.Comprehensive3DSR:
    """highdicom's SR document around ``report``, without the per-document work that does not change it.

    ``Comprehensive3DSR(content=report)`` deep-copies the whole content tree, parses the copy back
    into content items and searches it for references: ~3/4 of the CPU of an SR with 15 findings
    (~260 ms of ~340 on the shared 2-core machine, most of the reading room's time per study). The
    report was built by highdicom's own constructors (its items are already typed and checked) and
    references nothing but ``source_datasets``, so highdicom builds the document around the root
    container without its items (the evidence sequences list every source all the same:
    ``collect_evidence`` takes them from the evidence, the content only has to be covered by it),
    and the root's items are attached as they are. The encoded SR is the one highdicom makes from the
    whole tree (tests/serving/test_results.py compares them); ``.content`` holds the whole tree,
    as ``from_dataset`` sets it.
    """
    root = report[0]
    skeleton = Dataset()
    for element in root:
        if element.keyword != "ContentSequence":
            skeleton.add(element)
    skeleton.ContentSequence = []
    sr = hd.sr.Comprehensive3DSR(evidence=list(source_datasets), content=skeleton, **document)
    sr.add(root["ContentSequence"])
    sr._content = hd.sr.ContentSequence([root], is_root=True)  # what highdicom's from_dataset sets too
    return sr


def _describe(sr: hd.sr.Comprehensive3DSR, name: str, version: str, demo: bool, locale: str | None) -> None:
    """Series Description (and, for a locale, the character set that carries it)."""
    if locale is None:
        # ASCII only: the source's character set (often ISO_IR 100) must be able to encode it.
        sr.SeriesDescription = f"AI pre-read {name} v{version} - preliminary, unverified" + (
            " (DEMO model)" if demo else ""
        )
    else:
        sr.SpecificCharacterSet = i18n.DICOM_CHARSET[i18n.normalize_locale(locale)]
        sr.SeriesDescription = (
            i18n.translate(locale, "report", "sr.series_description", name=name, version=version)
            + (i18n.translate(locale, "report", "sr.demo") if demo else "")
        )[:64]


def build_ai_sr(
    source_datasets: Sequence[Dataset],
    findings: Sequence[dict[str, Any]],
    model: dict[str, Any],
    triage: dict[str, Any] | None = None,
    series_number: int = DEFAULT_SR_SERIES_NUMBER,
    instance_number: int = 1,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    procedure_reported: hd.sr.CodedConcept | None = None,
    institution_name: str | None = None,
    locale: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Build the AI pre-read SR for the image(s) in ``source_datasets`` (see the module docstring).

    Args:
        source_datasets: the image(s) read, all from one study (pixel data not needed).
        findings: dicts with ``code``, ``probability`` in [0, 1], ``positive`` (bool), ``threshold``
            (optional), ``name`` (used only for codes outside the chest X-ray label set) and an
            optional ``coding`` ({value, scheme, meaning}) overriding the concept.
        model: ``name``, ``version``, ``manufacturer`` (default "preread"), ``demo`` (bool).
        triage: ``level`` (critical/urgent/routine) and ``score`` in [0, 1], or None.
        series_number, instance_number: of the new SR.
        series_instance_uid, sop_instance_uid: new ones are generated when not given.
        procedure_reported: default SCT 399208008 "Plain chest X-ray".
        locale: the deployment's (zh-CN ...): finding meanings and the series description in that
            language, with Specific Character Set ISO_IR 192 (UTF-8) to carry it. None keeps ASCII
            English text in the source's character set.
    """
    _check_sources(source_datasets)
    checked = _check_findings(findings)
    name, version, manufacturer, demo = model_identity_fields(model)
    algorithm = algorithm_identification(model)
    source_images = [hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in source_datasets]
    groups = [_finding_group(finding, algorithm, source_images, locale) for finding in checked]
    if triage is not None:
        groups.append(_triage_group(triage, algorithm, source_images))
    observer = _observer_context(name, version, manufacturer)
    report = _measurement_report(source_datasets, observer, groups, procedure_reported or codes.CHEST_XRAY_PROCEDURE)
    sr = _sr_document(
        source_datasets,
        report,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer=manufacturer,
        is_complete=True,
        is_final=False,  # preliminary until a reader signs
        is_verified=False,  # VerificationFlag UNVERIFIED
        institution_name=institution_name,
    )
    _describe(sr, name, version, demo, locale)
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    return sr


def _as_sr(ds: Dataset | bytes | hd.sr.Comprehensive3DSR) -> hd.sr.Comprehensive3DSR:
    """A parsed SR whose content is a MeasurementReport (what highdicom's accessors need)."""
    if isinstance(ds, hd.sr.Comprehensive3DSR) and isinstance(ds.content, hd.sr.MeasurementReport):
        return ds
    if isinstance(ds, (bytes, bytearray, memoryview)):
        return hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(bytes(ds))), copy=False)
    # A dataset we did not parse ourselves (or an SR just built, whose content is still a plain
    # sequence): parse a copy so the caller's object is not converted in place.
    return hd.sr.Comprehensive3DSR.from_dataset(ds, copy=True)


def _num_value(measurement: hd.sr.Measurement) -> float:
    return float(measurement.value)


def findings_from_sr(ds: Dataset | bytes | hd.sr.Comprehensive3DSR) -> list[dict[str, Any]]:
    """The findings of an SR made by ``build_ai_sr``, in report order.

    Each: ``code``, ``name`` (the label's display name for chest X-ray codes, else the concept
    meaning), ``probability``, ``positive``, ``threshold`` (None if absent) and ``coding``.
    """
    sr = _as_sr(ds)
    findings: list[dict[str, Any]] = []
    for group in sr.content.get_image_measurement_groups():
        code = group.tracking_identifier
        if code == codes.TRIAGE_TRACKING_ID:
            continue
        concept = group.finding_type
        evaluations = group.get_qualitative_evaluations()
        probability = [m for m in group.get_measurements() if m.name == codes.PROBABILITY]
        threshold = [m for m in group.get_measurements() if m.name == codes.THRESHOLD]
        try:
            name = label_by_code(str(code)).name
        except KeyError:
            name = concept.meaning if concept is not None else str(code)
        findings.append(
            {
                "code": str(code),
                "name": name,
                "probability": _num_value(probability[0]) if probability else None,
                "positive": bool(evaluations) and evaluations[0].value == codes.PRESENT,
                "threshold": _num_value(threshold[0]) if threshold else None,
                "coding": {"value": concept.value, "scheme": concept.scheme_designator, "meaning": concept.meaning}
                if concept is not None
                else None,
            }
        )
    return findings


def triage_from_sr(ds: Dataset | bytes | hd.sr.Comprehensive3DSR) -> dict[str, Any] | None:
    """``{"level", "score"}`` from an SR made by ``build_ai_sr``, or None if it has no triage."""
    sr = _as_sr(ds)
    for group in sr.content.get_image_measurement_groups():
        if group.tracking_identifier != codes.TRIAGE_TRACKING_ID:
            continue
        evaluations = group.get_qualitative_evaluations()
        scores = [m for m in group.get_measurements() if m.name == codes.TRIAGE_SCORE]
        level = codes.TRIAGE_LEVEL_BY_VALUE.get(evaluations[0].value.value) if evaluations else None
        return {"level": level, "score": _num_value(scores[0]) if scores else None}
    return None


def model_from_sr(ds: Dataset | bytes | hd.sr.Comprehensive3DSR) -> dict[str, Any] | None:
    """The device observer of the SR: ``name``, ``version``, ``manufacturer``, ``device_uid``."""
    sr = _as_sr(ds)
    for context in sr.content.get_observer_contexts():
        if context.observer_type == codes.DEVICE:
            attributes = context.observer_identifying_attributes
            return {
                "name": attributes.name,
                "version": attributes.serial_number,
                "manufacturer": attributes.manufacturer_name,
                "device_uid": attributes.uid,
            }
    return None

"""GE Healthcare resting-ECG XML: MUSE (``<RestingECG>``, MAC carts via MUSE) and CardioSoft (``<CardiologyXML>``).

MUSE XML is decoded by ecgdatakit's ``GEMuseXMLParser`` (base64 int16 ``<WaveFormData>`` per lead;
MUSE stores I, II and V1–V6 and the reader derives III, aVR, aVL, aVF). CardioSoft XML — what the
CardioSoft PC ECG and the MAC carts it drives export — is read here: ``<StripData>`` holds the
rhythm strip (``<SampleRate units="Hz">``, ``<Resolution units="uVperLsb">``, one comma-separated
``<WaveformData lead="I">`` per lead), ``<RestingECGMeasurements>`` the cart's 12SL measurements and
``<Interpretation>`` its statements. Both keep the cart's own read as the record's
:class:`~datasets.ecg.record.MachineInterpretation`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from defusedxml import ElementTree
from ecgdatakit.parsing.parsers.ge_muse_xml import GEMuseXMLParser

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import mv_factor, normalize_leads, parse_number, parse_sex
from datasets.ecg.readers.base import EcgReader, source_bytes, xml_root_name
from datasets.ecg.readers.vendor import parse_with, to_ecg_record
from datasets.ecg.record import EcgRecord, MachineInterpretation, MachineStatement
from datasets.ecg.validate import check_duration, check_sampling_rate
from datasets.vocabulary.ecg_measurements import EcgMeasurement

__all__ = ["GeCardioSoftReader", "GeMuseReader"]


class GeMuseReader(EcgReader):
    """GE MUSE resting ECG XML (root element ``<RestingECG>``)."""

    name = "ge_muse"
    description = "GE MUSE XML"
    suffixes = (".xml",)
    content_types = ("application/xml", "text/xml")

    def sniff(self, head: bytes) -> bool:
        return xml_root_name(head) == "RestingECG"

    def read(self, source: Any) -> EcgRecord:
        data = source_bytes(source, self.name)
        kit = parse_with(GEMuseXMLParser, data, ".xml", self.description)
        record = to_ecg_record(kit, self.name, self.description, extra_measurements=_muse_extras(data, kit.annotations))
        record.meta.setdefault("manufacturer", "GE Healthcare")
        return record


def _muse_extras(data: bytes, annotations: dict[str, str]) -> dict[str, float]:
    """What ecgdatakit leaves in annotations: QTCorrected (the 12SL program's QTc, Bazett's formula as
    GE configures it by default) and the P duration from the median beat's P onset/offset, which MUSE
    gives in samples at ``ECGSampleBase`` Hz."""
    extras: dict[str, float] = {}
    if (qtc := parse_number(annotations.get("QTCorrected"))) is not None:
        extras[EcgMeasurement.QTC_BAZETT.value] = float(qtc)
    onset, offset = parse_number(annotations.get("median_p_onset")), parse_number(annotations.get("median_p_offset"))
    if onset is None or offset is None or offset <= onset:
        return extras
    try:
        measurements = _child(ElementTree.fromstring(data), "RestingECGMeasurements")
    except Exception:  # noqa: BLE001 - the parser already read the file; a missing extra is no error
        return extras
    base = parse_number(_text(measurements, "ECGSampleBase"))
    exponent = parse_number(_text(measurements, "ECGSampleExponent")) or 0
    if base and base > 0:
        extras[EcgMeasurement.P_DURATION.value] = round((offset - onset) * 1000.0 / (base * 10**exponent), 1)
    return extras


# CardioSoft <RestingECGMeasurements> element → the read's measurement name. QTCInterval is the
# 12SL program's QTc, Bazett's formula unless the cart is configured otherwise.
_CARDIOSOFT_MEASUREMENTS = {
    "VentricularRate": EcgMeasurement.HEART_RATE.value,
    "RRInterval": EcgMeasurement.RR_INTERVAL.value,
    "PQInterval": EcgMeasurement.PR_INTERVAL.value,
    "PDuration": EcgMeasurement.P_DURATION.value,
    "QRSDuration": EcgMeasurement.QRS_DURATION.value,
    "QTInterval": EcgMeasurement.QT_INTERVAL.value,
    "QTCInterval": EcgMeasurement.QTC_BAZETT.value,
    "PAxis": EcgMeasurement.P_AXIS.value,
    "RAxis": EcgMeasurement.QRS_AXIS.value,
    "TAxis": EcgMeasurement.T_AXIS.value,
}


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _child(element, name: str):
    return next((child for child in element if _local(child.tag) == name), None) if element is not None else None


def _text(element, name: str) -> str | None:
    child = _child(element, name)
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _strip(root) -> tuple[np.ndarray, tuple[str, ...], float]:
    strip = _child(root, "StripData")
    if strip is None:
        raise EcgInputError("StripData", "the CardioSoft XML holds no <StripData> rhythm strip")
    rate = check_sampling_rate(parse_number(_text(strip, "SampleRate")) or _text(strip, "SampleRate"), "SampleRate")
    resolution = _child(strip, "Resolution")
    units = (resolution.get("units") or "uVperLsb") if resolution is not None else None
    per_lsb = parse_number(resolution.text) if resolution is not None else None
    unit_factor = mv_factor(re.sub(r"(?i)perlsb$", "", units or ""))
    if per_lsb is None or per_lsb <= 0 or unit_factor is None:
        raise EcgInputError(
            "Resolution",
            f'expected the amplitude per sample step, e.g. <Resolution units="uVperLsb">5'
            f"</Resolution>; got {per_lsb!r} {units!r}",
        )
    waveforms = [child for child in strip if _local(child.tag) == "WaveformData"]
    if not waveforms:
        raise EcgInputError("WaveformData", "the <StripData> holds no <WaveformData lead=...> elements")
    leads = normalize_leads([str(w.get("lead") or "") for w in waveforms])
    rows = []
    for lead, waveform in zip(leads, waveforms):
        values = [v for v in re.split(r"[,\s]+", waveform.text or "") if v]
        check_duration(len(values), rate)
        try:
            rows.append(np.asarray(values, dtype=np.float64))
        except ValueError:
            raise EcgInputError(f"WaveformData.{lead}", "expected comma-separated whole numbers") from None
    if len({row.shape[0] for row in rows}) > 1:
        raise EcgInputError("WaveformData", f"the leads have different lengths ({sorted({r.shape[0] for r in rows})})")
    return np.vstack(rows) * (per_lsb * unit_factor), leads, rate


def _cardiosoft_machine(root) -> MachineInterpretation | None:
    measured = _child(root, "RestingECGMeasurements")
    measurements = {}
    for tag, key in _CARDIOSOFT_MEASUREMENTS.items():
        value = parse_number(_text(measured, tag))
        if value is not None:
            measurements[key] = float(value)
    interpretation = _child(root, "Interpretation")
    statements = []
    for element in interpretation.iter() if interpretation is not None else []:
        if _local(element.tag) in ("DiagnosisText", "ConclusionText") and element.text and element.text.strip():
            statements.append(MachineStatement(text=element.text.strip()))
    version = _text(measured, "DiagnosisVersion")
    machine = MachineInterpretation(
        measurements=measurements,
        statements=statements,
        source=f"GE CardioSoft ({version})" if version else "GE CardioSoft",
    )
    return None if machine.is_empty() else machine


def _cardiosoft_patient(root) -> dict[str, Any]:
    info = _child(root, "PatientInfo")
    patient: dict[str, Any] = {}
    if pid := _text(info, "PID"):
        patient["id"] = pid
    name = _child(info, "Name")
    full = " ".join(part for part in (_text(name, "GivenName"), _text(name, "FamilyName")) if part)
    if full:
        patient["name"] = full
    if sex := parse_sex(_text(info, "Gender")):
        patient["sex"] = sex
    if (age := parse_number(_text(info, "Age"))) is not None and age >= 0:
        patient["age"] = age
    return patient


class GeCardioSoftReader(EcgReader):
    """GE CardioSoft XML (root element ``<CardiologyXML>``), resting ECG observations."""

    name = "ge_cardiosoft"
    description = "GE CardioSoft XML"
    suffixes = (".xml",)
    content_types = ("application/xml", "text/xml")

    def sniff(self, head: bytes) -> bool:
        return xml_root_name(head) == "CardiologyXML"

    def read(self, source: Any) -> EcgRecord:
        data = source_bytes(source, self.name)
        try:
            root = ElementTree.fromstring(data)
        except Exception as exc:  # noqa: BLE001 - expat and defusedxml raise several types
            raise EcgInputError("file", f"not well-formed XML ({type(exc).__name__}: {exc})") from None
        if _local(root.tag) != "CardiologyXML":
            raise EcgInputError("file", f"expected a <CardiologyXML> document, found <{_local(root.tag)}>")
        observation = _text(root, "ObservationType")
        if observation and observation.lower() not in ("restecg", "resting ecg", "restingecg"):
            raise EcgInputError(
                "ObservationType",
                f"this CardioSoft file is a {observation!r} observation, not a "
                "resting ECG (exercise and Holter recordings are not read here)",
            )
        signals, leads, rate = _strip(root)
        meta: dict[str, Any] = {"format": self.name, "manufacturer": "GE Healthcare"}
        return EcgRecord(
            signals=np.ascontiguousarray(signals),
            leads=leads,
            sampling_rate=rate,
            patient=_cardiosoft_patient(root),
            meta=meta,
            machine=_cardiosoft_machine(root),
        )

"""Cart formats decoded by ecgdatakit (Philips Sierra XML, GE MUSE XML, HL7 aECG, SCP-ECG) → EcgRecord.

ecgdatakit (Apache-2.0, https://github.com/UMMISCO/ECGDataKit) has one parser class per format; it
reads files from a path, so the upload is written to a private temporary file. What it gives back —
leads with their scaling, the patient and device, the cart's global measurements and statements —
is mapped here onto the project's EcgRecord and :class:`~datasets.ecg.record.MachineInterpretation`,
under the same checks as every other reader: a missing, zero or negative sampling rate, leads with
different rates, uncalibrated samples, or a recording longer than a resting ECG are refused.
"""

from __future__ import annotations

import tempfile
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ecgdatakit import ECGDataKitError, Parser, RawSamplesError
from ecgdatakit import ECGRecord as KitRecord

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import normalize_lead_name, parse_sex
from datasets.ecg.record import EcgRecord, MachineInterpretation, MachineStatement
from datasets.ecg.validate import check_duration, check_sampling_rate
from datasets.vocabulary.ecg_measurements import EcgMeasurement

__all__ = ["machine_interpretation", "parse_with", "to_ecg_record"]

# ecgdatakit GlobalMeasurements attribute → the read's measurement name.
_MEASUREMENT_NAMES = {
    "heart_rate": EcgMeasurement.HEART_RATE.value,
    "rr_interval": EcgMeasurement.RR_INTERVAL.value,
    "pr_interval": EcgMeasurement.PR_INTERVAL.value,
    "qrs_duration": EcgMeasurement.QRS_DURATION.value,
    "qt_interval": EcgMeasurement.QT_INTERVAL.value,
    "qtc_bazett": EcgMeasurement.QTC_BAZETT.value,
    "qtc_fridericia": EcgMeasurement.QTC_FRIDERICIA.value,
    "p_axis": EcgMeasurement.P_AXIS.value,
    "qrs_axis": EcgMeasurement.QRS_AXIS.value,
    "t_axis": EcgMeasurement.T_AXIS.value,
}


def parse_with(parser: type[Parser], data: bytes, suffix: str, description: str) -> KitRecord:
    """Run one ecgdatakit parser on ``data``; its failures become EcgInputError("file")."""
    with tempfile.TemporaryDirectory(prefix="preread-ecg-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scaling notes etc.: what matters is checked below
            try:
                return parser().parse(path)
            except ECGDataKitError as exc:
                raise EcgInputError("file", f"not a readable {description} ({_kit_message(exc, path)})") from None
            except Exception as exc:  # noqa: BLE001 - damaged input surfaces as many exception types
                raise EcgInputError(
                    "file", f"the {description} could not be decoded ({type(exc).__name__}: {_kit_message(exc, path)})"
                ) from None


def _kit_message(exc: Exception, path: Path) -> str:
    return str(exc).replace(str(path), "the file").replace(path.name, "the file")


def _lead_rows(kit: KitRecord, description: str) -> tuple[np.ndarray, tuple[str, ...], float, list[str]]:
    """(signals mV, standard lead names, rate, ignored non-standard lead labels)."""
    if not kit.leads:
        raise EcgInputError("leads", f"the {description} holds no rhythm waveform")
    rates = {float(lead.sampling_rate or 0) for lead in kit.leads}
    if len(rates) > 1:
        raise EcgInputError("sampling_rate", f"the leads are sampled at different rates ({sorted(rates)} Hz)")
    rate = check_sampling_rate(rates.pop() or kit.recording.acquisition.signal.sampling_rate or None)
    rows, names, ignored = [], [], []
    for lead in kit.leads:
        name = normalize_lead_name(lead.label)
        if name is None:
            ignored.append(str(lead.label))
            continue
        if name in names:
            raise EcgInputError("leads", f"lead {name} given more than once")
        check_duration(len(lead.samples), rate)
        try:
            physical = lead.to_physical().convert_units("mV")
        except (RawSamplesError, ValueError) as exc:
            raise EcgInputError("units", f"lead {name}: the file gives no usable amplitude scale ({exc})") from None
        rows.append(np.asarray(physical.samples, dtype=np.float64))
        names.append(name)
    if not rows:
        raise EcgInputError("leads", f"no standard lead among {', '.join(ignored)}")
    lengths = {row.shape[0] for row in rows}
    if len(lengths) > 1:
        # Carts store every lead of a rhythm strip with the same length; trimming would misalign them.
        raise EcgInputError("leads", f"the leads have different lengths ({sorted(lengths)} samples)")
    return np.ascontiguousarray(np.vstack(rows)), tuple(names), rate, ignored


def machine_interpretation(kit: KitRecord, extra: dict[str, float] | None = None) -> MachineInterpretation | None:
    """The cart's measurements and statements (None when the file carries neither)."""
    measurements: dict[str, float] = {}
    for attribute, key in _MEASUREMENT_NAMES.items():
        value = getattr(kit.measurements, attribute, None)
        if value is not None:
            measurements[key] = float(value)
    measurements.update(extra or {})
    statements = [
        MachineStatement(text=str(text).strip(), reason=(str(reason).strip() or None) if reason else None)
        for text, reason in kit.interpretation.statements
        if str(text).strip()
    ]
    device = kit.recording.device
    source = " ".join(part for part in (device.manufacturer, device.model) if part) or None
    if device.software_version:
        source = f"{source or 'device'} (software {device.software_version})"
    machine = MachineInterpretation(
        measurements=measurements, statements=statements, severity=kit.interpretation.severity or None, source=source
    )
    return None if machine.is_empty() else machine


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (date, datetime)) else None


def to_ecg_record(
    kit: KitRecord, fmt: str, description: str, extra_measurements: dict[str, float] | None = None
) -> EcgRecord:
    """Map a parsed ecgdatakit record onto the project's EcgRecord (meta["format"] = ``fmt``)."""
    signals, leads, rate, ignored = _lead_rows(kit, description)
    patient: dict[str, Any] = {}
    if kit.patient.patient_id:
        patient["id"] = str(kit.patient.patient_id)
    name = " ".join(part for part in (kit.patient.first_name, kit.patient.last_name) if part)
    if name:
        patient["name"] = name
    if sex := parse_sex(kit.patient.sex):
        patient["sex"] = sex
    if kit.patient.age is not None and kit.patient.age >= 0:
        patient["age"] = kit.patient.age
    if birth := _iso(kit.patient.birth_date):
        patient["birth_date"] = birth[:10]
    device = kit.recording.device
    meta: dict[str, Any] = {"format": fmt}
    for key, value in (
        ("manufacturer", device.manufacturer),
        ("manufacturer_model_name", device.model),
        ("software_version", device.software_version),
        ("institution_name", device.institution),
        ("acquisition_datetime", _iso(kit.recording.date)),
        ("filter_low_hz", kit.recording.acquisition.filters.highpass),
        ("filter_high_hz", kit.recording.acquisition.filters.lowpass),
    ):
        if value not in (None, ""):
            meta[key] = value
    if ignored:
        meta["ignored_leads"] = ignored
    return EcgRecord(
        signals=signals,
        leads=leads,
        sampling_rate=rate,
        patient=patient,
        meta=meta,
        machine=machine_interpretation(kit, extra_measurements),
    )

"""Agreement of our ECG measurement suite with the measurements real carts made of the same ECGs.

References available without network (../shared/data and pydicom's test files):
- Philips Sierra XML files (ecg/philips): the cart's ``<globalmeasurements>`` (heart rate, PR, P
  duration, QRS, QT, QTcB/QTcF, frontal P/QRS/T axes); waveforms decoded with ``sierraecg``.
- pydicom's ``waveform_ecg.dcm`` (a Mortara cart): RR, PR, QRS, QT, QTc and axes as waveform
  annotations.
- PTB-XL (ecg/ptbxl): the cardiologist's ``heart_axis`` class (normal, LAD/ALAD, RAD/ARAD, ...).
- CinC 2021 (ecg/cinc2021): sinus tachycardia / bradycardia labels (a rate on either side of 100 / 60).

``python -m evaluation.ecg_measurements`` prints the mean and SD of the differences (ours − cart) per
measurement, the table docs/models.md reports.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import sierraecg
from pydicom.data import get_testdata_file

from datasets.ecg.measure import EcgMeasurements, measure
from datasets.ecg.quality import assess_quality
from datasets.ecg.readers import read_dicom_waveform, read_wfdb
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.vocabulary.ecg_measurements import AXIS_MEASUREMENTS
from datasets.vocabulary.ecg_measurements import EcgMeasurement as M
from datasets.vocabulary.ecg_statements import EcgStatement as S
from models.ecg.statements import Patient, interpret

# The real samples beside the repository (../shared/data), as the tests and benches find them.
SHARED_DATA = Path(os.environ.get("PREREAD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Cart tag → our measurement name.
PHILIPS_TAGS: dict[str, M] = {
    "heartrate": M.HEART_RATE,
    "print": M.PR_INTERVAL,
    "pdur": M.P_DURATION,
    "qrsdur": M.QRS_DURATION,
    "qtint": M.QT_INTERVAL,
    "qtcb": M.QTC_BAZETT,
    "qtcf": M.QTC_FRIDERICIA,
    "pfrontaxis": M.P_AXIS,
    "qrsfrontaxis": M.QRS_AXIS,
    "tfrontaxis": M.T_AXIS,
    # Philips format 1.03 spellings
    "meanventrate": M.HEART_RATE,
    "meanprint": M.PR_INTERVAL,
    "meanqrsdur": M.QRS_DURATION,
    "meanqtint": M.QT_INTERVAL,
    "meanqtc": M.QTC_BAZETT,
}
MORTARA_NAMES: dict[str, M] = {
    "PR Interval": M.PR_INTERVAL,
    "QRS Duration": M.QRS_DURATION,
    "QT Interval": M.QT_INTERVAL,
    "QTc Interval": M.QTC_BAZETT,
    "P Axis": M.P_AXIS,
    "QRS Axis": M.QRS_AXIS,
    "T Axis": M.T_AXIS,
}
# Physiologically impossible cart values are the cart's "not measured" (e.g. a P duration of 508 ms).
PLAUSIBLE: dict[M, tuple[float, float]] = {
    M.P_DURATION: (40, 250),
    M.PR_INTERVAL: (60, 500),
    M.QRS_DURATION: (40, 250),
    M.QT_INTERVAL: (200, 700),
}


@dataclass
class Reference:
    name: str
    record: EcgRecord
    cart: dict[str, float] = field(default_factory=dict)


def _plausible(key: M, value: float) -> bool:
    low, high = PLAUSIBLE.get(key, (-1e9, 1e9))
    return low <= value <= high


def philips_reference(path: Path) -> Reference:

    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8", "replace")
    block = re.search(r"<globalmeasurements.*?</globalmeasurements>", text, re.DOTALL)
    cart = {}
    for tag, value in re.findall(r"<(\w+)[^>]*>\s*(-?\d+(?:\.\d+)?)\s*</\1>", block.group(0) if block else ""):
        key = PHILIPS_TAGS.get(tag)
        if key and key not in cart and _plausible(key, float(value)):
            cart[key] = float(value)
    resolution = re.search(r"<(?:signal)?resolution>\s*(\d+(?:\.\d+)?)", text)
    uv = float(resolution.group(1)) if resolution else 5.0
    ecg = sierraecg.read_file(str(path))
    by_label = {lead.label: lead for lead in ecg.leads}
    signals = np.stack([np.asarray(by_label[name].samples, dtype=np.float64) for name in STANDARD_LEADS]) * uv / 1000
    rate = float(by_label["I"].sampling_freq)
    # Sierra files declare 11 s per lead; the cart's analysis covers the 10 s strip it prints, and the
    # last second holds a transition from another lead group (it adds beats that are not in the strip).
    signals = signals[:, : int(10 * rate)]
    return Reference(path.name, EcgRecord(signals, STANDARD_LEADS, rate, meta={"format": "philips"}), cart)


def mortara_reference() -> Reference:

    path = get_testdata_file("waveform_ecg.dcm")
    ds = pydicom.dcmread(path)
    cart = {}
    for item in ds.get("WaveformAnnotationSequence", []):
        concept = item.get("ConceptNameCodeSequence")
        key = MORTARA_NAMES.get(concept[0].CodeMeaning) if concept else None
        if key and item.get("NumericValue") is not None:
            cart[key] = float(item.NumericValue)
        elif concept and concept[0].CodeMeaning == "RR Interval" and item.get("NumericValue"):
            cart[M.HEART_RATE] = 60000.0 / float(item.NumericValue)
    return Reference("pydicom waveform_ecg.dcm (Mortara)", read_dicom_waveform(path).in_standard_order(), cart)


def cart_references(shared_data: Path) -> list[Reference]:
    files = sorted(p for p in (shared_data / "ecg" / "philips").iterdir() if p.suffix.lower() == ".xml")
    return [philips_reference(p) for p in files] + [mortara_reference()]


def _axis_diff(a: float, b: float) -> float:
    return (a - b + 180.0) % 360.0 - 180.0


def agreement(refs: list[Reference]) -> dict[str, dict[str, float]]:
    """Per measurement: n, mean and SD of (ours − cart), and the per-record differences."""
    diffs: dict[str, list[float]] = {}
    for ref in refs:
        ours: EcgMeasurements = measure(ref.record)
        for key, cart_value in ref.cart.items():
            value = ours.get(key)
            if value is None:
                diffs.setdefault(key, [])
                continue
            d = _axis_diff(value, cart_value) if key in AXIS_MEASUREMENTS else value - cart_value
            diffs.setdefault(key, []).append(d)
    table = {}
    for key, values in diffs.items():
        arr = np.asarray(values, dtype=np.float64)
        table[key] = {
            "n": int(arr.size),
            "mean": float(arr.mean()) if arr.size else float("nan"),
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
            "diffs": [round(float(x), 1) for x in arr],
        }
    return table


# --- PTB-XL: the cardiologists' statements and heart axis against ours ---------------------------------

# PTB-XL SCP codes (any of them) → our statements (any of them) that say the same thing.
PTBXL_STATEMENTS: dict[str, tuple[tuple[str, ...], tuple[S, ...]]] = {
    "sinus (SR, SARRH, STACH, SBRAD)": (
        ("SR", "SARRH", "STACH", "SBRAD"),
        (S.SINUS_RHYTHM, S.SINUS_BRADYCARDIA, S.SINUS_TACHYCARDIA),
    ),
    "STACH": (("STACH",), (S.SINUS_TACHYCARDIA,)),
    "SBRAD": (("SBRAD",), (S.SINUS_BRADYCARDIA,)),
    "AFIB/AFLT": (("AFIB", "AFLT"), (S.ATRIAL_FIBRILLATION,)),
    "1AVB": (("1AVB",), (S.FIRST_DEGREE_AV_BLOCK,)),
    "CRBBB": (("CRBBB",), (S.RBBB,)),
    "CLBBB": (("CLBBB",), (S.LBBB,)),
    "LVOLT": (("LVOLT",), (S.LOW_VOLTAGE,)),
    "LVH": (("LVH",), (S.LVH_VOLTAGE,)),
    "PACE": (("PACE",), (S.PACED_RHYTHM,)),
}
# PTB-XL heart_axis class → the frontal QRS axis range (degrees) it stands for.
PTBXL_AXIS = {"MID": (-30, 90), "LAD": (-30, 0), "ALAD": (-90, -30), "RAD": (90, 120), "ARAD": (90, 180)}


def ptbxl_records(shared_data: Path, folds: tuple[int, ...] = tuple(range(1, 10))):
    """(row, EcgRecord) for the PTB-XL sample records of ``folds``."""

    root = shared_data / "ecg" / "ptbxl"
    db = pd.read_csv(root / "ptbxl_database.csv")
    db = db[db.strat_fold.isin(folds)]
    for _, row in db.iterrows():
        header = root / f"{row.filename_hr}.hea"
        if not header.exists():
            continue
        record = read_wfdb(header).in_standard_order()
        record.patient.update(sex="F" if row.sex == 1 else "M", age=row.age)
        yield row, ast.literal_eval(row.scp_codes), record


def ptbxl_agreement(shared_data: Path, folds: tuple[int, ...] = tuple(range(1, 10))) -> dict[str, dict[str, float]]:
    """Per statement: records with the PTB-XL code (any likelihood) and how many we stated (sensitivity),
    records without it and how many we stated anyway (false positives); and the heart-axis classes."""

    counts = {code: {"pos": 0, "tp": 0, "neg": 0, "fp": 0} for code in PTBXL_STATEMENTS}
    axis = {name: {"n": 0, "in_range": 0} for name in PTBXL_AXIS}
    for row, scp, record in ptbxl_records(shared_data, folds):
        m = measure(record)
        if not assess_quality(m, record.duration_s).acceptable:
            continue
        made = {s.code for s in interpret(m, {}, {}, Patient(record.patient["sex"], record.patient["age"]))}
        for code, (scp_codes, statements) in PTBXL_STATEMENTS.items():
            c = counts[code]
            stated = bool(made.intersection(statements))
            if any(k in scp for k in scp_codes):
                c["pos"] += 1
                c["tp"] += stated
            else:
                c["neg"] += 1
                c["fp"] += stated
        qrs_axis = m.get(M.QRS_AXIS)
        if isinstance(row.heart_axis, str) and row.heart_axis in PTBXL_AXIS and qrs_axis is not None:
            low, high = PTBXL_AXIS[row.heart_axis]
            axis[row.heart_axis]["n"] += 1
            axis[row.heart_axis]["in_range"] += int(low - 10 <= qrs_axis <= high + 10)
    return {"statements": counts, "axis": axis}


def main() -> None:

    data = SHARED_DATA
    table = agreement(cart_references(data))
    print("Ours - cart (4 Philips Sierra XML files, 1 Mortara DICOM):")
    print(f"{'measurement':22s} {'n':>3s} {'mean diff':>10s} {'SD':>8s}   per record")
    for key in sorted(table):
        row = table[key]
        print(f"{key:22s} {row['n']:3d} {row['mean']:10.1f} {row['sd']:8.1f}   {row['diffs']}")
    result = ptbxl_agreement(data)
    print("\nPTB-XL sample (folds 1-9, acceptable quality): cardiologists' codes vs our statements")
    print(f"{'code':32s} {'with':>5s} {'stated':>7s} {'without':>8s} {'stated':>7s}")
    for code, c in result["statements"].items():
        print(f"{code:32s} {c['pos']:5d} {c['tp']:7d} {c['neg']:8d} {c['fp']:7d}")
    print("\nPTB-XL heart_axis class: QRS axis within the class's range (±10°)")
    for name, c in result["axis"].items():
        print(f"{name:6s} {c['in_range']:3d} / {c['n']:3d}")


if __name__ == "__main__":
    main()

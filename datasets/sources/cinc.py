"""PhysioNet/Computing in Cardiology Challenge 2020 / 2021 WFDB folders.

Layout: ``*.hea`` headers (anywhere under the folder, e.g. the 2021 ``training/<database>/g1/``
tree or a flat 2020 ``Training_WFDB/``) with their ``.mat`` (or ``.dat``) signal files. Header
comments carry the labels and demographics::

    # Age: 53
    # Sex: Male
    # Dx: 426783006,164889003
    # Rx: Unknown

The record name's prefix says which database a record came from (A: CPSC, Q: CPSC-Extra,
I: St Petersburg INCART, S: PTB, HR: PTB-XL, E: Georgia, JS: Chapman-Shaoxing / Ningbo); it is the
case's ``site``. The challenge defines no split and no patient ids (each record its own patient).

Label sets:
  preread  the served ECG labels (``datasets.vocabulary.ecg_labels``): SNOMED codes mapped with
           ``labels_from_snomed``; the Dx line lists every diagnosis the record was annotated with,
           so an unmapped code means "none of ours" (0), not unknown.
  snomed   one column per SNOMED CT code present in the folder (most frequent first).
  superclass  the five PTB-XL diagnostic superclasses implied by the diagnoses
           (``datasets.vocabulary.ecg.snomed_superclasses``): MI, STTC, CD, HYP 1 when implied, else 0;
           NORM 1 when sinus rhythm is the only diagnosis, 0 when another superclass is implied, else
           unknown (NaN).
A record without a Dx line (or ``Dx: Unknown``) is NaN for every label.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import wfdb

from datasets.ecg.readers import parse_cinc_comments
from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    check_choice,
    ecg_file_loader,
    ecg_input_spec,
    served_labels,
)
from datasets.vocabulary.ecg import SUPERCLASS_CODES, PtbxlSuperclass, snomed_superclasses
from datasets.vocabulary.ecg_labels import labels_from_snomed

LABEL_SETS = ("preread", "snomed", "superclass")

# Record-name prefixes → source database (the "site" of a CinC case).
CINC_SOURCES = {
    "A": "CPSC",
    "Q": "CPSC-Extra",
    "I": "StPetersburg",
    "S": "PTB",
    "HR": "PTB-XL",
    "E": "Georgia",
    "JS": "Chapman-Ningbo",
}

# Names of the diagnoses the 2021 Challenge scored (its dx_mapping_scored.csv), for the snomed label set.
SNOMED_NAMES = {
    "164889003": "atrial fibrillation",
    "164890007": "atrial flutter",
    "6374002": "bundle branch block",
    "426627000": "bradycardia",
    "733534002": "complete left bundle branch block",
    "713427006": "complete right bundle branch block",
    "270492004": "1st degree av block",
    "713426002": "incomplete right bundle branch block",
    "39732003": "left axis deviation",
    "445118002": "left anterior fascicular block",
    "164909002": "left bundle branch block",
    "251146004": "low qrs voltages",
    "698252002": "nonspecific intraventricular conduction disorder",
    "10370003": "pacing rhythm",
    "284470004": "premature atrial contraction",
    "427172004": "premature ventricular contractions",
    "164947007": "prolonged pr interval",
    "111975006": "prolonged qt interval",
    "164917005": "qwave abnormal",
    "47665007": "right axis deviation",
    "59118001": "right bundle branch block",
    "427393009": "sinus arrhythmia",
    "426177001": "sinus bradycardia",
    "426783006": "sinus rhythm",
    "427084000": "sinus tachycardia",
    "63593006": "supraventricular premature beats",
    "164934002": "t wave abnormal",
    "59931005": "t wave inversion",
    "17338001": "ventricular premature beats",
}


def site_of(record_name: str) -> str:
    """The source database of a record, from its name's prefix (the CinC case's ``site``)."""
    prefix = "HR" if record_name.startswith("HR") else "JS" if record_name.startswith("JS") else record_name[:1]
    return CINC_SOURCES.get(prefix, prefix or "unknown")


def load_cinc(path: str | Path, *, label_set: str = "preread", limit: int | None = None) -> SourceDataset:
    """Index a CinC 2020/2021 WFDB folder (headers only; signals are read by ``load_inputs``)."""
    check_choice("cinc", "label_set", label_set, LABEL_SETS)
    root = Path(path)
    if not root.is_dir():
        raise SourceLayoutError(f"cinc: {root} is not a folder of WFDB records (*.hea + *.mat)")
    headers = sorted(root.rglob("*.hea"))
    if not headers:
        raise SourceLayoutError(f"cinc: no WFDB headers (*.hea) under {root}")
    if limit is not None:
        headers = headers[:limit]
    rows, codes_per_record = [], []
    for header in headers:
        row, dx = _read_header(header)
        rows.append(row)
        codes_per_record.append(dx)
    labels, names, Y = _label_matrix(codes_per_record, label_set)
    unlabelled = sum(1 for dx in codes_per_record if not dx)
    notes = [
        f"labels: {label_set} (SNOMED CT codes from the '# Dx:' header lines"
        + (", mapped with datasets.vocabulary.ecg_labels.labels_from_snomed)" if label_set == "preread" else ")")
    ]
    if unlabelled:
        notes.append(f"{unlabelled} record(s) without a Dx line are unknown for every label")
    return SourceDataset(
        format="cinc",
        path=root,
        task="ecg",
        labels=labels,
        label_names=names,
        Y=Y,
        meta=pd.DataFrame(rows),
        loader=ecg_file_loader(),
        notes=notes,
        input_spec=ecg_input_spec(),
        description=f"PhysioNet/CinC Challenge WFDB records from {root} ({len(rows)} records; "
        f"sources {', '.join(sorted({r['site'] for r in rows}))}; labels {label_set})",
    )


def _read_header(header: Path) -> tuple[dict[str, Any], list[str]]:
    """(the case's meta row, its SNOMED CT diagnoses) from one WFDB header."""
    try:
        comments = wfdb.rdheader(str(header.with_suffix(""))).comments
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types on bad headers
        raise SourceLayoutError(f"cinc: cannot read WFDB header {header} ({type(exc).__name__}: {exc})") from None
    patient, dx = parse_cinc_comments(comments)
    row = {
        "id": header.stem,
        "patient_id": header.stem,
        "file": str(header),
        "site": site_of(header.stem),
        "sex": {"M": "male", "F": "female"}.get(patient.get("sex"), "unknown"),
        "age": float(patient["age"]) if "age" in patient else np.nan,
        "manufacturer": "unknown",
        "snomed": ",".join(dx),
    }
    return row, dx


def _label_matrix(codes_per_record: list[list[str]], label_set: str) -> tuple[list[str], list[str], np.ndarray]:
    """(codes, names, Y) of ``label_set``: a record without diagnoses is unknown for every label; under
    ``superclass``, NORM is unknown where the diagnoses neither imply nor exclude it."""
    implied: list[tuple[Any, bool]] = []
    if label_set == "preread":
        labels, names = served_labels("ecg")
        positives = [labels_from_snomed(dx) for dx in codes_per_record]
    elif label_set == "superclass":
        labels, names = list(SUPERCLASS_CODES), [PtbxlSuperclass(c).display_name for c in SUPERCLASS_CODES]
        implied = [snomed_superclasses(dx) for dx in codes_per_record]
        positives = [sorted(member.value for member in found) for found, _ in implied]
    else:
        counts = Counter(code for dx in codes_per_record for code in set(dx))
        labels = [code for code, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        names = [SNOMED_NAMES.get(code, f"SNOMED CT {code}") for code in labels]
        positives = codes_per_record
    Y = np.zeros((len(codes_per_record), len(labels)), dtype=np.float32)
    column = {code: j for j, code in enumerate(labels)}
    for i, (dx, found) in enumerate(zip(codes_per_record, positives)):
        if not dx:
            Y[i] = np.nan  # no diagnosis recorded: unknown, not normal
            continue
        for code in found:
            Y[i, column[code]] = 1.0
        if label_set == "superclass" and not implied[i][1]:
            Y[i, column[PtbxlSuperclass.NORM.value]] = np.nan  # normal or not: the diagnoses do not say
    return labels, names, Y

"""PTB-XL (Wagner et al. 2020, PhysioNet): the layout as published.

::

    PATH/ptbxl_database.csv      one row per ECG: ecg_id, patient_id, age, sex (0 male, 1 female),
                                 site, device, scp_codes ("{'NORM': 100.0, 'SR': 0.0}"), strat_fold,
                                 filename_lr, filename_hr, ...
    PATH/scp_statements.csv      the 71 SCP-ECG statements: diagnostic / form / rhythm flags,
                                 diagnostic_class, diagnostic_subclass
    PATH/records100/00000/00001_lr.{hea,dat}    100 Hz WFDB
    PATH/records500/00000/00001_hr.{hea,dat}    500 Hz WFDB

Split: the recommended one (``strat_fold`` 1–8 train, 9 validation, 10 test; the folds are
patient-disjoint and label-stratified). ``sampling_rate`` picks records100 or records500; either
goes through THE preprocessing, which resamples to 500 Hz.

Label sets, derived from scp_statements.csv exactly as the PTB-XL benchmark (Strodthoff et al.
2021, ``utils.compute_label_aggregations`` / ``select_data``) does:

  diagnostic       the 44 diagnostic statements themselves
  subdiagnostic    their ``diagnostic_subclass`` (23)
  superdiagnostic  their ``diagnostic_class``: NORM, MI, STTC, CD, HYP
  form             the 19 form statements
  rhythm           the 12 rhythm statements
  all              all 71 statements
  preread          the served ECG labels (``datasets.vocabulary.ecg_labels``) via ``PTBXL_TO_ECG``, so a PTB-XL
                   model is read with the triage rules in configs/triage/ecg.yaml

As in the benchmark, a statement counts whatever its likelihood (the ``scp_codes`` values: 0–100
for diagnostic statements, 0 for form and rhythm ones), label columns are the classes that occur,
sorted, and records without any label of the chosen set are dropped (the benchmark's
``*_len > 0`` selection). ``min_likelihood`` > 0 keeps only diagnostic statements at least that
likely (e.g. 100 = certain), a common stricter variant.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    check_choice,
    ecg_file_loader,
    multi_hot,
    read_table,
    served_labels,
)
from datasets.vocabulary.ecg import PtbxlSuperclass

LABEL_SETS = ("diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm", "all", "preread")
SAMPLING_RATES = (100, 500)
TRAIN_FOLDS = tuple(range(1, 9))
VAL_FOLDS = (9,)
TEST_FOLDS = (10,)
AGE_OVER_89 = 300  # PTB-XL stores ages above 89 as 300 (HIPAA)

# PTB-XL SCP-ECG statements → the served ECG label codes (None: no served label).
PTBXL_TO_ECG = {
    "NORM": "NORM",
    "SR": None,
    "AFIB": "AF",
    "AFLT": "AF",
    "STACH": "STACH",
    "SBRAD": "SBRAD",
    "STE_": "STE",
    "INJAS": "STE",
    "INJAL": "STE",
    "INJIN": "STE",
    "INJLA": "STE",
    "INJIL": "STE",
    "ISCAL": "STE",
    "ISCIN": "STE",
    "ISCIL": "STE",
    "ISCAS": "STE",
    "ISCLA": "STE",
    "ISCAN": "STE",
    "ISC_": "STE",
    "AMI": "STE",
    "IMI": "STE",
    "CLBBB": "WQRS",
    "CRBBB": "WQRS",
    "LAFB": "WQRS",
    "IVCD": "WQRS",
    "1AVB": "WQRS",
    "2AVB": "WQRS",
    "3AVB": "WQRS",
    "PAC": "PREM",
    "PVC": "PREM",
    "BIGU": "PREM",
}

# What a doctor reads for the superdiagnostic classes (the vocabulary's one definition).
SUPERCLASS_NAMES = {member.value: member.display_name for member in PtbxlSuperclass}

DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold")
STATEMENT_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")


def _scp_codes(value: Any, ecg_id: Any, file: Path) -> dict[str, float]:
    try:
        codes = ast.literal_eval(value) if isinstance(value, str) else {}
    except (ValueError, SyntaxError):
        raise SourceLayoutError(
            f"ptbxl: {file} ecg_id {ecg_id}: scp_codes {value!r} is not a dict literal "
            "like \"{'NORM': 100.0, 'SR': 0.0}\""
        ) from None
    if not isinstance(codes, dict):
        raise SourceLayoutError(f"ptbxl: {file} ecg_id {ecg_id}: scp_codes must be a dict, got {value!r}")
    return {str(k): float(v or 0.0) for k, v in codes.items()}


class Statements:
    """scp_statements.csv as the lookups the aggregation needs (built once, not per record)."""

    def __init__(self, table: pd.DataFrame):
        self.table = table
        diagnostic = table[table["diagnostic"] == 1.0]
        self.diagnostic = set(diagnostic.index)
        self.subclass = {k: str(v) for k, v in diagnostic["diagnostic_subclass"].items() if str(v) != "nan"}
        self.superclass = {k: str(v) for k, v in diagnostic["diagnostic_class"].items() if str(v) != "nan"}
        self.form = set(table.index[table["form"] == 1.0])
        self.rhythm = set(table.index[table["rhythm"] == 1.0])

    def aggregate(self, codes: dict[str, float], label_set: str, min_likelihood: float = 0.0) -> set[str]:
        """One record's labels in ``label_set`` from its scp_codes (the benchmark's aggregation)."""
        if min_likelihood > 0:
            codes = {k: v for k, v in codes.items() if k not in self.diagnostic or v >= min_likelihood}
        if label_set == "diagnostic":
            return {k for k in codes if k in self.diagnostic}
        if label_set == "subdiagnostic":
            return {self.subclass[k] for k in codes if k in self.subclass}
        if label_set == "superdiagnostic":
            return {self.superclass[k] for k in codes if k in self.superclass}
        if label_set == "form":
            return {k for k in codes if k in self.form}
        if label_set == "rhythm":
            return {k for k in codes if k in self.rhythm}
        if label_set == "all":
            return set(codes)
        if label_set == "preread":
            return {PTBXL_TO_ECG[k] for k in codes if PTBXL_TO_ECG.get(k)}
        raise ValueError(f"unknown PTB-XL label set {label_set!r}")


def _label_names(labels: Sequence[str], statements: pd.DataFrame, label_set: str) -> list[str]:
    if label_set == "superdiagnostic":
        return [SUPERCLASS_NAMES.get(code, code) for code in labels]
    names = statements["description"] if "description" in statements.columns else pd.Series(dtype=str)
    # A subclass shares its code with a statement where one exists (IMI, LVH ...); else the code.
    return [str(names[code]) if code in names.index and isinstance(names[code], str) else code for code in labels]


def load_ptbxl(
    path: str | Path,
    *,
    label_set: str = "superdiagnostic",
    sampling_rate: int = 500,
    min_likelihood: float = 0.0,
    drop_unlabelled: bool | None = None,
    val_folds: Sequence[int] = VAL_FOLDS,
    test_folds: Sequence[int] = TEST_FOLDS,
    limit: int | None = None,
) -> SourceDataset:
    """Index a PTB-XL root. ``drop_unlabelled`` defaults to the benchmark's rule (drop records with
    no label of the set) for every set but ``preread``, whose all-negative rows are real negatives."""
    check_choice("ptbxl", "label_set", label_set, LABEL_SETS)
    check_choice("ptbxl", "sampling_rate", int(sampling_rate), SAMPLING_RATES)
    if not 0.0 <= min_likelihood <= 100.0:
        raise ValueError(f"ptbxl: min_likelihood must be within 0..100, got {min_likelihood}")
    val, test = set(int(f) for f in val_folds), set(int(f) for f in test_folds)
    if val & test:
        raise ValueError(f"ptbxl: validation folds {sorted(val)} and test folds {sorted(test)} overlap")
    root = Path(path)
    filename_column = "filename_lr" if int(sampling_rate) == 100 else "filename_hr"
    db, statements = _read_tables(root, label_set, filename_column)
    database_file = root / "ptbxl_database.csv"
    folds, lookup = _folds(db, database_file), Statements(statements)
    found = [
        lookup.aggregate(_scp_codes(value, ecg_id, database_file), label_set, min_likelihood)
        for ecg_id, value in zip(db["ecg_id"], db["scp_codes"])
    ]
    labels, names = _label_columns(found, statements, label_set, database_file)
    drop = (label_set != "preread") if drop_unlabelled is None else drop_unlabelled
    keep = np.array([bool(f) for f in found]) if drop else np.ones(len(db), dtype=bool)
    dropped = f"; {int((~keep).sum())} record(s) without a {label_set} label dropped" if drop and (~keep).any() else ""
    dataset = SourceDataset(
        format="ptbxl",
        path=root,
        task="ecg",
        labels=labels,
        label_names=names,
        Y=multi_hot([sorted(f) for f in found], labels),
        meta=_meta(db, root, folds, val, test, filename_column),
        loader=ecg_file_loader(),
        input_spec={"pipeline": "ecg_preprocess", "sampling_rate": int(sampling_rate)},
        notes=[
            f"PTB-XL {label_set} labels ({len(labels)}) from scp_statements.csv as in the PTB-XL benchmark"
            + (f"; diagnostic statements with likelihood < {min_likelihood:g} ignored" if min_likelihood else "")
            + dropped,
            f"split: strat_fold {min(TRAIN_FOLDS)}-{max(TRAIN_FOLDS)} train (other folds), "
            f"{sorted(val)} validation, {sorted(test)} test; records{sampling_rate}",
        ],
        description=f"PTB-XL at {root}: {int(keep.sum())} records, {label_set} labels, records{sampling_rate} "
        f"({sampling_rate} Hz, resampled to 500 Hz by the preprocessing)",
    ).where(keep)
    return dataset.head(limit)


def _label_columns(
    found: list[set[str]], statements: pd.DataFrame, label_set: str, database_file: Path
) -> tuple[list[str], list[str]]:
    """(codes, names) of the label columns: the served set, or the classes of the set that occur, sorted."""
    if label_set == "preread":
        return served_labels("ecg")
    labels = sorted(set().union(*found)) if found else []
    if not labels:
        raise SourceLayoutError(f"ptbxl: no record in {database_file} has a {label_set} label")
    return labels, _label_names(labels, statements, label_set)


def _read_tables(root: Path, label_set: str, filename_column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ptbxl_database.csv, scp_statements.csv indexed by statement); the statements may be absent
    for the ``preread`` set, which maps codes itself."""
    database_file, statements_file = root / "ptbxl_database.csv", root / "scp_statements.csv"
    if not database_file.is_file():
        raise SourceLayoutError(
            f"ptbxl: no ptbxl_database.csv in {root} (expected the PTB-XL root: "
            "ptbxl_database.csv, scp_statements.csv, records100/, records500/)"
        )
    db = read_table(database_file, "ptbxl", (*DATABASE_COLUMNS, filename_column))
    if label_set == "preread" and not statements_file.is_file():
        return db, pd.DataFrame(columns=["description", *STATEMENT_COLUMNS])
    return db, read_table(statements_file, "ptbxl", STATEMENT_COLUMNS, index_col=0)


def _folds(db: pd.DataFrame, database_file: Path) -> pd.Series:
    """The ``strat_fold`` column as numbers 1..10 (SourceLayoutError naming the first bad row)."""
    folds = pd.to_numeric(db["strat_fold"], errors="coerce")
    bad = ~folds.isin(range(1, 11))
    if bad.any():
        first = db.loc[bad].iloc[0]
        raise SourceLayoutError(
            f"ptbxl: {database_file} column 'strat_fold' must hold folds 1..10; ecg_id "
            f"{first['ecg_id']} has {str(first['strat_fold'])!r} ({int(bad.sum())} such row(s))"
        )
    return folds


def _meta(
    db: pd.DataFrame, root: Path, folds: pd.Series, val: set[int], test: set[int], filename_column: str
) -> pd.DataFrame:
    """One row per record: ids, split from the folds, site, sex, age (300 = over 89 → 90), device, file."""
    missing = pd.Series(np.nan, index=db.index)
    sex = pd.to_numeric(db.get("sex"), errors="coerce") if "sex" in db.columns else missing
    age = pd.to_numeric(db.get("age"), errors="coerce") if "age" in db.columns else missing
    meta = pd.DataFrame(
        {
            "id": db["ecg_id"].astype(str),
            "patient_id": [
                str(int(p)) if pd.notna(p) else None for p in pd.to_numeric(db["patient_id"], errors="coerce")
            ],
            "split": ["test" if f in test else "val" if f in val else "train" for f in folds.astype(int)],
            "strat_fold": folds.astype(int),
            "site": [
                str(int(s)) if pd.notna(s) else "unknown"
                for s in pd.to_numeric(db.get("site", missing), errors="coerce")
            ],
            "sex": sex.map({0: "male", 1: "female"}).fillna("unknown"),
            # 300 encodes "over 89": keep them in the oldest band rather than at 300 years.
            "age": age.where(age < AGE_OVER_89, 90.0),
            "manufacturer": db.get("device", pd.Series("unknown", index=db.index))
            .fillna("unknown")
            .astype(str)
            .str.strip(),
            "file": [str(root / str(f)) for f in db[filename_column]],
            "scp_codes": db["scp_codes"],
        }
    )
    if "recording_date" in db.columns:
        meta["recording_date"] = db["recording_date"]
    return meta

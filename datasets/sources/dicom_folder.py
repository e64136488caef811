"""A folder of DICOM files with a ``labels.csv`` — how a hospital hands over a labelled set.

::

    PATH/labels.csv     file, <label code> ..., [patient_id], [split], [site], [sex], [age], [manufacturer]
    PATH/<file>         DICOM chest radiographs (CR/DX, any transfer syntax pydicom decodes) or
                        12-lead ECG waveforms, at the paths ``file`` gives (relative to PATH)

One column per label code (the served codes of the task, or the ``labels`` given); a cell is 1,
0 or blank (unknown); a label without a column is unknown for every case. ``split`` (train / val
/ test) is optional. Site, sex, age and manufacturer come from the DICOM header (InstitutionName,
PatientSex, PatientAge, Manufacturer) unless the CSV gives them. A column that is neither a
label nor one of these is an error, so a misspelt label code cannot silently drop a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom

from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    check_choice,
    cxr_input_spec,
    ecg_file_loader,
    ecg_input_spec,
    image_file_loader,
    label_columns,
    read_table,
)
from datasets.vocabulary.age import age_in_years

META_COLUMNS = ("file", "patient_id", "split", "site", "sex", "age", "manufacturer", "id")


def dicom_header_meta(file: Path) -> dict[str, Any]:
    """Subgroup attributes from the DICOM header (missing or unreadable headers give nothing)."""
    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - metadata is optional; the pixels are checked when loaded
        return {}
    sex = {"M": "male", "F": "female"}.get(str(getattr(ds, "PatientSex", "") or "").upper(), "unknown")
    age = age_in_years(getattr(ds, "PatientAge", None) or None)
    return {
        "site": str(getattr(ds, "InstitutionName", "") or "unknown"),
        "sex": sex,
        "age": age if age is not None else np.nan,
        "manufacturer": str(getattr(ds, "Manufacturer", "") or "unknown"),
        **({"patient_id": str(ds.PatientID)} if getattr(ds, "PatientID", None) else {}),
    }


def load_dicom_folder(
    path: str | Path,
    *,
    task: str,
    labels: Sequence[str] | None = None,
    image_size: int = 224,
    channels: int = 1,
    limit: int | None = None,
) -> SourceDataset:
    check_choice("dicom", "task", task, ("ecg", "cxr"))
    root = Path(path)
    csv_file = root / "labels.csv"
    if not csv_file.is_file():
        raise SourceLayoutError(
            f"dicom: no labels.csv in {root} (columns: file, one per label code, optional "
            "patient_id, split, site, sex, age, manufacturer)"
        )
    table = read_table(csv_file, "dicom", ("file",), dtype={"file": str, "patient_id": str})
    if limit is not None:
        table = table.head(limit)
    codes, names = label_columns(task, labels)
    unknown = [c for c in table.columns if c not in codes and c not in META_COLUMNS]
    if unknown:
        raise SourceLayoutError(
            f"dicom: {csv_file} column(s) {', '.join(repr(c) for c in unknown)} are neither "
            f"label codes ({', '.join(codes)}) nor {', '.join(META_COLUMNS)}"
        )
    rows = [_case_row(root, row) for _, row in table.iterrows()]
    loader = ecg_file_loader() if task == "ecg" else image_file_loader(image_size, channels)
    spec = ecg_input_spec() if task == "ecg" else cxr_input_spec(image_size, channels)
    return SourceDataset(
        format="dicom",
        path=root,
        task=task,
        labels=codes,
        label_names=names,
        Y=_label_matrix(table, codes, csv_file),
        meta=pd.DataFrame(rows),
        loader=loader,
        input_spec=spec,
        notes=["labels.csv columns named by label code; missing columns and blank cells are unknown"],
        description=f"DICOM folder {root}: {len(rows)} {'ECGs' if task == 'ecg' else 'images'} with labels.csv",
    )


def _label_matrix(table: pd.DataFrame, codes: Sequence[str], csv_file: Path) -> np.ndarray:
    """[n, L] of 1 / 0 / NaN from the label columns (a label without a column is unknown throughout)."""
    Y = np.full((len(table), len(codes)), np.nan, dtype=np.float32)
    for j, code in enumerate(codes):
        if code not in table.columns:
            continue
        values = pd.to_numeric(table[code], errors="coerce")
        bad = table[code].notna() & ~values.isin((0, 1))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise SourceLayoutError(
                f"dicom: {csv_file} row {row + 2}, column {code!r}: {table[code].iloc[row]!r} (expected 1, 0 or blank)"
            )
        Y[:, j] = values.to_numpy(dtype=np.float32)
    return Y


def _case_row(root: Path, row: pd.Series) -> dict[str, Any]:
    """One case's meta: the DICOM header's attributes, overridden by what the CSV gives."""
    file = root / str(row["file"])
    overrides = {
        k: row[k]
        for k in ("patient_id", "split", "site", "sex", "age", "manufacturer")
        if k in row and pd.notna(row[k])
    }
    if "sex" in overrides:
        overrides["sex"] = {"m": "male", "f": "female"}.get(str(overrides["sex"]).strip().lower()[:1], "unknown")
    return {"id": str(row.get("id", row["file"])), "file": str(file), **dicom_header_meta(file), **overrides}

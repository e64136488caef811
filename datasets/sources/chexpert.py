"""CheXpert (Irvin et al. 2019), as published (``CheXpert-v1.0`` or ``-small``).

::

    PATH/train.csv, PATH/valid.csv   Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding,
                                     Enlarged Cardiomediastinum, Cardiomegaly, Lung Opacity,
                                     Lung Lesion, Edema, Consolidation, Pneumonia, Atelectasis,
                                     Pneumothorax, Pleural Effusion, Pleural Other, Fracture,
                                     Support Devices
    PATH/train/patient00001/study1/view1_frontal.jpg ...

``PATH`` is the folder (train.csv → training pool, valid.csv → validation split, test.csv → test if
present) or one CSV. Image paths in the CSV start with the release folder
(``CheXpert-v1.0-small/train/...``); they are resolved against the CSV's parent's parent, its
folder, or its folder without that first component, whichever exists.

Observation values: 1 positive, 0 negative, -1 uncertain, blank not mentioned. ``uncertain`` is the
policy for -1 (Irvin et al.'s U-Ones / U-Zeros, or ``ignore``: unknown, masked out of the loss);
``unmentioned`` is the policy for blanks (``zeros``: the CheXpert convention, the labeller found no
mention; ``ignore``: unknown). Seven observations map onto the served labels; the 14 ChestX-ray14
labels CheXpert does not have (Infiltration, Mass, ...) are unknown. ``ANY`` is 1 when any
pathology (mapped or not; Support Devices is not one) is positive, 0 when all are negative or
"No Finding" is 1, else unknown. ``views`` keeps frontal films only by default, as the served model
reads frontal chest radiographs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    check_choice,
    cxr_input_spec,
    image_file_loader,
    normalise_sex,
    read_table,
    served_dataset,
    served_labels,
)
from datasets.vocabulary.age import age_in_years
from datasets.vocabulary.cxr_labels import ANY_ABNORMALITY

UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")
UNMENTIONED_POLICIES = ("zeros", "ignore")
VIEWS = ("frontal", "lateral", "all")

CHEXPERT_TO_CXR = {
    "Atelectasis": "ATELECTASIS",
    "Cardiomegaly": "CARDIOMEGALY",
    "Pleural Effusion": "EFFUSION",
    "Pneumonia": "PNEUMONIA",
    "Pneumothorax": "PNEUMOTHORAX",
    "Consolidation": "CONSOLIDATION",
    "Edema": "EDEMA",
    "Lung Lesion": None,
    "Lung Opacity": None,
    "No Finding": None,
}
# Pathologies that make a film abnormal though they have no served label of their own.
OTHER_PATHOLOGIES = ("Enlarged Cardiomediastinum", "Lung Opacity", "Lung Lesion", "Pleural Other", "Fracture")
SPLIT_FILES = {"train.csv": "train", "valid.csv": "val", "test.csv": "test"}
_PATIENT = re.compile(r"(patient\d+)")


def _policy_value(value, uncertain: str, unmentioned: str) -> float:
    if pd.isna(value):
        return 0.0 if unmentioned == "zeros" else np.nan
    value = float(value)
    if value == -1.0:
        return {"ones": 1.0, "zeros": 0.0, "ignore": np.nan}[uncertain]
    if value not in (0.0, 1.0):
        raise ValueError(f"{value!r} (expected 1, 0, -1 or blank)")
    return value


def _resolve(csv_file: Path, relative: str) -> Path:
    rel = Path(relative)
    candidates = [csv_file.parent.parent / rel, csv_file.parent / rel]
    if len(rel.parts) > 1:
        candidates.append(csv_file.parent / Path(*rel.parts[1:]))
    return next((c for c in candidates if c.is_file()), candidates[0])


def load_chexpert(
    path: str | Path,
    *,
    uncertain: str = "ignore",
    unmentioned: str = "zeros",
    views: str = "frontal",
    image_size: int = 224,
    channels: int = 1,
    limit: int | None = None,
) -> SourceDataset:
    """Index a CheXpert folder (or one of its CSVs) under the served chest X-ray labels."""
    check_choice("chexpert", "uncertain policy", uncertain, UNCERTAIN_POLICIES)
    check_choice("chexpert", "unmentioned policy", unmentioned, UNMENTIONED_POLICIES)
    check_choice("chexpert", "views", views, VIEWS)
    path = Path(path)
    files = _csv_files(path)
    labels, _ = served_labels("cxr")
    rows, Ys = [], []
    for csv_file, split in files:
        table = read_table(csv_file, "chexpert", ("Path",))
        observations = [c for c in dict.fromkeys((*CHEXPERT_TO_CXR, *OTHER_PATHOLOGIES)) if c in table.columns]
        if not observations:
            raise SourceLayoutError(
                f"chexpert: {csv_file} has none of the observation columns ({', '.join(CHEXPERT_TO_CXR)} ...)"
            )
        if views != "all" and "Frontal/Lateral" in table.columns:
            table = table[table["Frontal/Lateral"].astype(str).str.lower() == views].reset_index(drop=True)
        for index, row in table.iterrows():
            values = _observation_values(row, observations, uncertain, unmentioned, f"{csv_file} row {index + 2}")
            Ys.append(_label_row(values, labels))
            rows.append(_case_row(csv_file, split, row))
    if not rows:
        raise SourceLayoutError(f"chexpert: no {views} images listed in {', '.join(str(f) for f, _ in files)}")
    return served_dataset(
        "chexpert",
        "cxr",
        path,
        np.stack(Ys),
        pd.DataFrame(rows),
        loader=image_file_loader(image_size, channels),
        input_spec=cxr_input_spec(image_size, channels),
        notes=[
            f"uncertain labels (-1): {uncertain}; not mentioned (blank): {unmentioned}; views: {views}; "
            "labels CheXpert lacks are unknown"
        ],
        description=f"CheXpert at {path}: {len(rows)} {views} images ({', '.join(f.name for f, _ in files)}; "
        f"uncertain={uncertain})",
    ).head(limit)


def _csv_files(path: Path) -> list[tuple[Path, str | None]]:
    """(CSV, the split it holds) for a CheXpert folder or one of its CSVs (train.csv: the training pool)."""
    if path.is_dir():
        files = [(path / name, split) for name, split in SPLIT_FILES.items() if (path / name).is_file()]
        if not files:
            raise SourceLayoutError(f"chexpert: no train.csv / valid.csv in {path}")
        return files
    if path.is_file():
        return [(path, SPLIT_FILES.get(path.name) if path.name != "train.csv" else None)]
    raise SourceLayoutError(f"chexpert: {path} not found (give the CheXpert folder or one of its CSVs)")


def _observation_values(
    row: pd.Series, observations: list[str], uncertain: str, unmentioned: str, where: str
) -> dict[str, float]:
    """Observation → 1 / 0 / NaN under the policies; SourceLayoutError naming the cell otherwise."""
    values = {}
    for observation in observations:
        try:
            values[observation] = _policy_value(row[observation], uncertain, unmentioned)
        except ValueError as exc:
            raise SourceLayoutError(f"chexpert: {where}, column {observation!r}: {exc}") from None
    return values


def _label_row(values: dict[str, float], labels: list[str]) -> np.ndarray:
    """One film's served labels: the mapped observations; ANY from every pathology (or No Finding);
    the labels CheXpert lacks stay unknown."""
    y = np.full(len(labels), np.nan, dtype=np.float32)
    for observation, code in CHEXPERT_TO_CXR.items():
        if code is not None and observation in values:
            y[labels.index(code)] = values[observation]
    pathologies = [v for k, v in values.items() if k != "No Finding"]
    if any(v == 1.0 for v in pathologies):
        y[labels.index(ANY_ABNORMALITY)] = 1.0
    elif values.get("No Finding") == 1.0 or (pathologies and all(v == 0.0 for v in pathologies)):
        y[labels.index(ANY_ABNORMALITY)] = 0.0
    return y


def _case_row(csv_file: Path, split: str | None, row: pd.Series) -> dict[str, Any]:
    """One film's meta: its path (resolved), patient (from the path), split, sex, age, view."""
    relative = str(row["Path"])
    patient = _PATIENT.search(relative)
    return {
        "id": relative,
        "file": str(_resolve(csv_file, relative)),
        "patient_id": patient.group(1) if patient else relative,
        "split": split,
        "site": "CheXpert",
        "sex": normalise_sex(row.get("Sex")),
        "age": age_in_years(row.get("Age")),
        "manufacturer": "unknown",
        "view": row.get("Frontal/Lateral", None),
        "projection": row.get("AP/PA", None),
    }

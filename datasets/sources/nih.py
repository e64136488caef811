"""NIH ChestX-ray14 (Wang et al. 2017), in either of the two layouts it circulates in.

1. The published layout::

       PATH/Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv)
            Image Index, Finding Labels ("Cardiomegaly|Effusion", "No Finding"), Follow-up #,
            Patient ID, Patient Age, Patient Gender, View Position, ...
       PATH/images_001/images/00000001_000.png ...   (images found anywhere under PATH)
       PATH/train_val_list.txt, PATH/test_list.txt   (optional: the official patient-wise split)

   Labels are complete for the 14 findings (text-mined from the reports: an unnamed finding is 0);
   ``ANY`` is 1 when any finding is. With the official lists, test_list images are the test
   split and train_val_list images the training pool; validation is then carved out by patient.
   CSV rows whose image is not on disk are left out (a partial download) and counted in the notes.

2. Class folders (``PATH/<Finding>/*.png``, as ../shared/data/cxr/nih): a finding folder
   (``Pneumonia``, ``Cardiomegaly|Effusion``) is positive for its findings and ``ANY`` and unknown
   (NaN) for the others — the image may show them too; a ``No_findings`` / ``No Finding`` /
   ``Normal`` folder is negative for everything. The patient is the NIH file-name prefix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datasets.imaging import nih_patient_id
from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    cxr_input_spec,
    image_file_loader,
    index_files,
    multi_hot,
    normalise_sex,
    read_table,
    served_dataset,
    served_labels,
)
from datasets.vocabulary.age import age_in_years
from datasets.vocabulary.cxr_labels import codes_from_nih

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
NORMAL_FOLDERS = ("no finding", "no findings", "normal")
CSV_COLUMNS = ("Image Index", "Finding Labels")


def folder_codes(name: str) -> list[str]:
    """Label codes of a class folder: ``No_findings`` → [], ``Pneumonia`` → [PNEUMONIA, ANY],
    ``Cardiomegaly|Effusion`` → both + ANY. Unknown names raise ValueError."""
    if name.lower().replace("_", " ") in NORMAL_FOLDERS:
        return []
    return codes_from_nih(name)


def _read_list(file: Path) -> set[str]:
    return {line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()}


def load_nih(path: str | Path, *, image_size: int = 224, channels: int = 1, limit: int | None = None) -> SourceDataset:
    """Index an NIH ChestX-ray14 folder (the Data_Entry CSV layout if present, else class folders)."""
    root = Path(path)
    if not root.is_dir():
        raise SourceLayoutError(
            f"nih: {root} is not a folder (expected Data_Entry_2017*.csv + images, or class folders <Finding>/*.png)"
        )
    csvs = sorted(root.glob("Data_Entry*.csv"))
    dataset = _from_csv(root, csvs[0]) if csvs else _from_folders(root)
    dataset.loader = image_file_loader(image_size, channels)
    dataset.input_spec = cxr_input_spec(image_size, channels)
    return dataset.head(limit)


def _from_csv(root: Path, csv_file: Path) -> SourceDataset:
    table = read_table(csv_file, "nih", CSV_COLUMNS)
    files = index_files(root, IMAGE_SUFFIXES)
    present = table["Image Index"].astype(str).isin(files)
    missing = int((~present).sum())
    table = table[present].reset_index(drop=True)
    if table.empty:
        raise SourceLayoutError(f"nih: none of the images listed in {csv_file} are under {root}")
    positives = []
    for image, findings in zip(table["Image Index"], table["Finding Labels"]):
        try:
            positives.append(codes_from_nih(str(findings)))
        except ValueError as exc:
            raise SourceLayoutError(f"nih: {csv_file} row for {image}: column 'Finding Labels': {exc}") from None
    test_list, train_list = root / "test_list.txt", root / "train_val_list.txt"
    split = [None] * len(table)
    if test_list.is_file():
        tests, pool = _read_list(test_list), _read_list(train_list) if train_list.is_file() else set()
        split = [
            "test" if image in tests else "train" if not pool or image in pool else None
            for image in table["Image Index"]
        ]
    meta = pd.DataFrame(
        {
            "id": table["Image Index"].astype(str),
            "file": [str(files[name]) for name in table["Image Index"].astype(str)],
            "patient_id": table["Patient ID"].astype(str) if "Patient ID" in table.columns else None,
            "split": split,
            "site": "NIH",
            "sex": [normalise_sex(v) for v in table.get("Patient Gender", pd.Series([None] * len(table)))],
            "age": [age_in_years(v) for v in table.get("Patient Age", pd.Series([None] * len(table)))],
            "manufacturer": "unknown",
            "view": table.get("View Position", pd.Series([None] * len(table))),
            "finding_labels": table["Finding Labels"],
        }
    )
    if meta["patient_id"].isna().all():
        meta["patient_id"] = [nih_patient_id(name) for name in meta["id"]]
    notes = [f"labels from {csv_file.name} 'Finding Labels' (complete for the 14 findings; ANY = any finding)"]
    if missing:
        notes.append(f"{missing} image(s) listed in {csv_file.name} are not under {root} and were left out")
    if test_list.is_file():
        notes.append("split: official test_list.txt = test; train_val_list.txt = training pool")
    return _served_dataset(
        root, positives, None, meta, notes, f"NIH ChestX-ray14 at {root}: {len(meta)} images ({csv_file.name})"
    )


def _from_folders(root: Path) -> SourceDataset:
    rows, positives, known = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            continue
        try:
            codes = folder_codes(folder.name)
        except ValueError as exc:
            raise SourceLayoutError(
                f"nih: class folder {folder}: {exc} (name folders by ChestX-ray14 finding, or No_findings)"
            ) from None
        for image in images:
            rows.append(
                {
                    "id": image.stem,
                    "file": str(image),
                    "patient_id": nih_patient_id(image) or image.stem,
                    "site": "NIH",
                    "stratum": folder.name,
                }
            )
            positives.append(codes)
            known.append(None if not codes else codes)  # a finding folder says nothing about other findings
    if not rows:
        raise SourceLayoutError(
            f"nih: {root} has neither a Data_Entry_2017*.csv nor class folders with images "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    notes = [
        "class-folder layout: a finding folder is positive for that finding (and ANY) and unknown for the "
        "others; a no-finding folder is negative for all"
    ]
    strata = ", ".join(sorted({r["stratum"] for r in rows}))
    description = f"NIH ChestX-ray14 class folders at {root}: {len(rows)} images ({strata})"
    return _served_dataset(root, positives, known, pd.DataFrame(rows), notes, description)


def _served_dataset(
    root: Path,
    positives: list[list[str]],
    known: list[list[str] | None] | None,
    meta: pd.DataFrame,
    notes: list[str],
    description: str,
) -> SourceDataset:
    """The NIH cases under the served chest X-ray labels (``known``: per case the codes it speaks about)."""
    labels, _ = served_labels("cxr")
    return served_dataset(
        "nih", "cxr", root, multi_hot(positives, labels, known), meta, notes=notes, description=description
    )

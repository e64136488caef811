"""Dataset adapters: the public on-disk layouts a data scientist trains and evaluates on, each read
into one :class:`SourceDataset` (labels with NaN = unknown, case metadata, the layout's own split,
and inputs through THE preprocessing shared with serving).

=========  ==================================================================  =====================
format     layout                                                              module
=========  ==================================================================  =====================
ptbxl      ptbxl_database.csv + scp_statements.csv + records100/ | records500/ ``sources.ptbxl``
cinc       PhysioNet/CinC 2020–2021 WFDB (``# Dx:`` SNOMED CT codes)           ``sources.cinc``
nih        ChestX-ray14 Data_Entry_2017*.csv + images, or class folders        ``sources.nih``
chexpert   CheXpert train.csv / valid.csv + images (uncertain-label policy)    ``sources.chexpert``
medmnist   MedMNIST .npz (train/val/test)                                      ``sources.medmnist``
dicom      DICOM files + labels.csv                                            ``sources.dicom_folder``
worklist   the worklist's signed-reads export (JSON/CSV)                       ``sources.worklist``
=========  ==================================================================  =====================

``open_source(format, path, **options)`` dispatches by name; options are each loader's keywords.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets.sources.base import SourceDataset, SourceLayoutError
from datasets.sources.chexpert import load_chexpert
from datasets.sources.cinc import load_cinc
from datasets.sources.dicom_folder import load_dicom_folder
from datasets.sources.medmnist import load_medmnist
from datasets.sources.nih import load_nih
from datasets.sources.ptbxl import load_ptbxl
from datasets.sources.worklist import load_worklist

LOADERS: dict[str, Callable[..., SourceDataset]] = {
    "ptbxl": load_ptbxl,
    "cinc": load_cinc,
    "nih": load_nih,
    "chexpert": load_chexpert,
    "medmnist": load_medmnist,
    "dicom": load_dicom_folder,
    "worklist": load_worklist,
}
FORMATS: tuple[str, ...] = tuple(LOADERS)
TASK_OF_FORMAT = {
    "ptbxl": "ecg",
    "cinc": "ecg",
    "nih": "cxr",
    "chexpert": "cxr",
    "medmnist": "cxr",
    "dicom": None,
    "worklist": None,
}


def open_source(fmt: str, path: str | Path, **options: Any) -> SourceDataset:
    """``open_source("ptbxl", "/data/ptb-xl", label_set="superdiagnostic", sampling_rate=100)``."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{fmt} data not found at {path}")
    return LOADERS[fmt](path, **options)


__all__ = [
    "FORMATS",
    "LOADERS",
    "TASK_OF_FORMAT",
    "SourceDataset",
    "SourceLayoutError",
    "open_source",
    "load_chexpert",
    "load_cinc",
    "load_dicom_folder",
    "load_medmnist",
    "load_nih",
    "load_ptbxl",
    "load_worklist",
]

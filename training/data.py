"""Training data for the loop: arrays of preprocessed inputs and targets, per split.

Real layouts are read by the adapters in ``datasets.sources`` (the same ones ``preread evaluate``
uses), through THE preprocessing shared with serving. The split is the layout's own where it has
one (PTB-XL strat_fold 1–8 / 9 / 10, MedMNIST's, CheXpert valid.csv, NIH test_list.txt, a
``split`` column in a labels.csv); otherwise validation is drawn by patient with the config's
seed (``datasets.sources.splits``). Targets keep NaN for unknown labels: the loop masks them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.sources import SourceDataset, open_source
from datasets.sources.splits import assign_splits
from models.card import TrainingData as CardTrainingData
from models.card import fingerprint_arrays
from training.config import TrainConfig

log = logging.getLogger(__name__)

SHARED_DATA_ENV = "PREREAD_SHARED_DATA"
REAL_DATA_INTENDED_USE = (
    "Preliminary read to prioritise a reading worklist; every read is reviewed and signed "
    "by a physician. Not a diagnosis."
)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class TrainingData:
    """A task's train / validation / (optional) test arrays with what the card says about them."""

    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    description: str
    source: str
    labels: list[str] = field(default_factory=list)  # label codes, column order of Y
    label_names: list[str] = field(default_factory=list)
    label_set: str = "preread"
    val_origin: np.ndarray | None = None  # per validation case: "nih", "phantom" ...
    test_origin: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split_ids: dict[str, list[str]] = field(default_factory=dict)  # case ids per split (real layouts)
    # label code → real training cases held both positives and negatives of it (the card's learned_from_real)
    learned_from_real: dict[str, bool] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return fingerprint_arrays(self.X_train, self.Y_train)

    def for_card(self) -> CardTrainingData:
        """The card's ``training_data``: what the model learned from, split sizes and the fingerprint."""
        return CardTrainingData(
            description=self.description,
            source=self.source,
            n_train=len(self.X_train),
            n_val=len(self.X_val),
            n_test=len(self.X_test) if self.X_test is not None else None,
            fingerprint_sha256=self.fingerprint(),
        )


def resolve_nih_dir(path: str | Path | None = None) -> Path:
    """The NIH sample folder: ``path`` if given, else ``$PREREAD_SHARED_DATA/cxr/nih``, else
    ``../shared/data/cxr/nih`` beside the repository."""
    if path is not None:
        # A relative path is tried as given, then from the repository root (configs name ../shared/...).
        candidates = [Path(path)] + ([REPO / path] if not Path(path).is_absolute() else [])
        text = Path(path).as_posix()
        if os.environ.get(SHARED_DATA_ENV) and "shared/data/" in text:
            # ../shared/data/X in a config means $PREREAD_SHARED_DATA/X where that is set.
            candidates.insert(0, Path(os.environ[SHARED_DATA_ENV]) / text.split("shared/data/", 1)[1])
    else:
        candidates = []
        if os.environ.get(SHARED_DATA_ENV):
            candidates.append(Path(os.environ[SHARED_DATA_ENV]) / "cxr" / "nih")
        candidates.append(REPO.parent / "shared" / "data" / "cxr" / "nih")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"NIH chest X-ray samples not found (tried {tried}); set data.path or ${SHARED_DATA_ENV}")


def source_options(config: TrainConfig) -> dict[str, Any]:
    """The adapter keywords a config's data section means."""
    data = config.data
    fmt = "nih" if data.source == "nih+phantom" else data.source
    images = {"image_size": data.image_size, "channels": data.channels}
    options: dict[str, Any] = {
        "ptbxl": {
            "label_set": data.label_set,
            "sampling_rate": data.sampling_rate,
            "min_likelihood": data.min_likelihood,
        },
        "cinc": {"label_set": data.label_set},
        "nih": images,
        "chexpert": {**images, "uncertain": data.uncertain, "unmentioned": data.unmentioned, "views": data.views},
        "medmnist": images,
        "dicom": {"task": config.task, **(images if config.task == "cxr" else {})},
        "worklist": {"task": config.task, **(images if config.task == "cxr" else {})},
    }[fmt]
    return options


def open_training_source(config: TrainConfig) -> SourceDataset:
    """The config's real-data layout, indexed (no inputs read yet)."""
    data = config.data
    fmt = "nih" if data.source == "nih+phantom" else data.source
    path = resolve_nih_dir(data.path) if fmt == "nih" else data.path
    return open_source(fmt, path, **source_options(config))


def cap(dataset: SourceDataset, n: int | None) -> SourceDataset:
    """At most ``n`` cases; with a ``stratum`` column (class folders) taken round-robin over the
    strata, so capping keeps the classes balanced."""
    if n is None or n >= len(dataset):
        return dataset
    if "stratum" not in dataset.meta.columns:
        return dataset.head(n)
    queues = {
        s: list(np.flatnonzero(dataset.meta["stratum"].to_numpy() == s)) for s in dict.fromkeys(dataset.meta["stratum"])
    }
    picked: list[int] = []
    while len(picked) < n:
        for items in queues.values():
            if items and len(picked) < n:
                picked.append(items.pop(0))
    return dataset.subset(sorted(picked))


def learned_labels(Y_train: np.ndarray, labels: list[str]) -> dict[str, bool]:
    """Per label: do these (real) training targets hold at least one known positive and one known negative?"""
    Y = np.asarray(Y_train, dtype=np.float64)
    return {code: bool(np.any(Y[:, i] > 0.5) and np.any(Y[:, i] <= 0.5)) for i, code in enumerate(labels)}


def from_source(
    dataset: SourceDataset, config: TrainConfig, progress: bool = False, origin: str | None = None
) -> TrainingData:
    """Read, preprocess and split a layout's cases into training arrays."""
    data = config.data
    origin = origin or dataset.format
    dataset = cap(dataset, data.n if data.source not in ("nih+phantom",) else None)
    X, dataset = dataset.load_inputs(progress=progress, cache_dir=data.cache_dir)
    parts = assign_splits(dataset, data.val_fraction, data.seed)
    train, val, test = parts["train"], parts["val"], parts["test"]
    if len(train) < 2 or len(val) < 1:
        raise ValueError(
            f"{dataset.format} at {dataset.path}: {len(train)} training / {len(val)} validation cases; "
            "need at least 2 / 1 (more cases, more patients, or another data.val_fraction)"
        )
    ids = dataset.ids
    result = TrainingData(
        X_train=X[train],
        Y_train=dataset.Y[train],
        X_val=X[val],
        Y_val=dataset.Y[val],
        X_test=X[test] if len(test) else None,
        Y_test=dataset.Y[test] if len(test) else None,
        description=(
            f"{dataset.description}; split {'as the layout defines' if dataset.has_split else 'by patient'}:"
            f" {len(train)} train / {len(val)} val / {len(test)} test"
        ),
        source=data.source if data.label_set == "preread" else f"{data.source}:{data.label_set}",
        labels=list(dataset.labels),
        label_names=list(dataset.label_names),
        label_set=data.label_set,
        val_origin=np.full(len(val), origin),
        test_origin=origin if len(test) else None,
        counts={
            f"{origin}_train": len(train),
            f"{origin}_val": len(val),
            **({f"{origin}_test": len(test)} if len(test) else {}),
        },
        notes=list(dataset.notes),
        split_ids={"train": [ids[i] for i in train], "val": [ids[i] for i in val], "test": [ids[i] for i in test]},
        learned_from_real=learned_labels(dataset.Y[train], dataset.labels),
    )
    del X
    log.info(
        "%s: %d train / %d val / %d test cases, %d labels (%s)",
        dataset.format,
        len(train),
        len(val),
        len(test),
        len(dataset.labels),
        data.label_set,
    )
    return result

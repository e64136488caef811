"""Train / validation / test assignment: the layout's own split where it has one, else a seeded
split by patient (no patient on both sides), stratified so each stratum reaches validation."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from datasets.sources.base import SourceDataset


def split_by_patient(
    groups: Sequence[str], strata: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices: whole patients go to one side; each stratum contributes about
    ``val_fraction`` of its cases (at least one patient, never its last one) to validation."""
    rng = np.random.default_rng([seed, 11])
    val: list[int] = []
    taken: set[str] = set()
    for stratum in sorted(set(strata)):
        members = [i for i, s in enumerate(strata) if s == stratum]
        patients = sorted({groups[i] for i in members})
        if len(patients) < 2:
            continue
        rng.shuffle(patients)
        target = max(1, int(round(len(members) * val_fraction)))
        chosen: list[int] = []
        for patient in patients[:-1]:  # always leave one patient for training
            if len(chosen) >= target:
                break
            chosen += [i for i in members if groups[i] == patient]
            taken.add(patient)
        val += chosen
    # A patient with cases in several strata goes wholly to validation once chosen in one.
    val += [i for i, g in enumerate(groups) if g in taken]
    val_index = np.array(sorted(set(val)), dtype=np.int64)
    train_index = np.array(sorted(set(range(len(groups))) - set(val)), dtype=np.int64)
    return train_index, val_index


def rarest_label_strata(Y: np.ndarray) -> list[str]:
    """Stratum per case: its rarest positive label (or "none"), so rare labels reach validation."""
    positives = np.nan_to_num(Y, nan=0.0) > 0.5
    frequency = positives.sum(axis=0)
    out = []
    for row in positives:
        present = np.flatnonzero(row)
        out.append(str(present[np.argmin(frequency[present])]) if len(present) else "none")
    return out


def assign_splits(dataset: SourceDataset, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Indices of ``train``, ``val`` and ``test`` cases.

    Cases the layout puts in validation or test stay there. If it names no validation cases, about
    ``val_fraction`` of the remaining ones are drawn by patient (stratified by the ``stratum`` column
    if the layout has one, e.g. NIH class folders, else by each case's rarest positive label).
    """
    split = dataset.split
    test = np.flatnonzero(split == "test")
    val = np.flatnonzero(split == "val")
    pool = np.flatnonzero((split != "test") & (split != "val"))
    if len(val) == 0 and len(pool) > 1:
        meta = dataset.meta.iloc[pool]
        groups = [str(g) for g in meta["patient_id"]]
        strata = (
            [str(s) for s in meta["stratum"]] if "stratum" in meta.columns else rarest_label_strata(dataset.Y[pool])
        )
        train_local, val_local = split_by_patient(groups, strata, val_fraction, seed)
        train, val = pool[train_local], pool[val_local]
    else:
        train = pool
    patients = {
        name: set(dataset.meta["patient_id"].iloc[index])
        for name, index in (("train", train), ("val", val), ("test", test))
    }
    shared = (patients["train"] & (patients["val"] | patients["test"])) | (patients["val"] & patients["test"])
    if shared:
        warnings.warn(
            f"{dataset.format}: {len(shared)} patient(s) have cases in more than one split "
            f"(e.g. {sorted(shared)[:3]}); metrics on val/test will be optimistic",
            stacklevel=2,
        )
    return {"train": train, "val": val, "test": test}

"""The chest X-ray trainer's data: real layouts (``training.data``), synthetic chest phantoms, or NIH
samples + phantoms; NIH class folders with a held-out test split by patient.

Every image, real or phantom, goes through ``datasets.imaging.preprocess_image`` — the same
letterbox + normalisation serving applies — once, when the data are loaded.

- NIH samples: ``<folder>/<Finding>/<image>.png`` where ``<Finding>`` is a ChestX-ray14 name
  (``Pneumonia`` → PNEUMONIA + ANY, the other findings unknown and masked out of the loss) or
  ``No_findings`` (all labels negative). They are split into train/validation by *patient* (the
  NIH file name holds the patient number), so no patient is on both sides, and per folder, so
  both classes reach validation.
- Real layouts (``data.format`` nih with Data_Entry_2017.csv, chexpert, medmnist, dicom,
  worklist) are read by ``datasets.sources`` with their own splits (``training.data``).
- Phantoms (``datasets.imaging.random_chest_phantom``): cardiomegaly, effusion, pneumonia and
  consolidation drawn independently; labels CARDIOMEGALY / EFFUSION / PNEUMONIA / CONSOLIDATION
  (+ ANY when any is present).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from datasets.imaging import PHANTOM_FINDINGS, preprocess_image, random_chest_phantom
from datasets.sources import SourceDataset, open_source
from datasets.sources.splits import split_by_patient
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES, CXR_LABEL_NAMES, codes_from_nih, multi_hot
from training.config import TrainConfig
from training.data import TrainingData, from_source, open_training_source, resolve_nih_dir, source_options
from training.tensors import split

TEST_SEED_OFFSET = 1_000_000  # phantom held-out test set: seed + this, never the training stream
HOLDOUT_SEED_OFFSET = 7_919  # the held-out test patients: another stream than the validation draw


def make_phantoms(
    n: int, seed: int, phantom_size: int, size: int, channels: int, prevalence: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random chest phantoms through THE preprocessing, with their multi-hot targets."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, channels, size, size), dtype=np.float32)
    Y = np.zeros((n, len(CXR_LABEL_CODES)), dtype=np.float32)
    for index in range(n):
        phantom = random_chest_phantom(phantom_size, seed=rng, prevalence=prevalence)
        X[index] = preprocess_image(phantom.pixels, size=size, channels=channels)
        Y[index] = multi_hot(codes_from_nih(phantom.finding_labels))
    return X, Y


def hold_out_patients(
    dataset: SourceDataset, fraction: float, seed: int, also: set[str] = frozenset()
) -> SourceDataset:
    """Mark about ``fraction`` of each stratum's patients (seeded) — and every patient in ``also`` —
    as the ``test`` split, before validation is drawn from the rest."""
    groups = [str(g) for g in dataset.meta["patient_id"]]
    test = set()
    if fraction > 0:
        strata = (
            [str(s) for s in dataset.meta["stratum"]] if "stratum" in dataset.meta.columns else ["all"] * len(groups)
        )
        _, test_index = split_by_patient(groups, strata, fraction, seed + HOLDOUT_SEED_OFFSET)
        test = {int(i) for i in test_index}
    test |= {i for i, g in enumerate(groups) if g in also}
    meta = dataset.meta.copy()
    meta.loc[sorted(test), "split"] = "test"
    return replace(dataset, meta=meta)


def load_nih_with_holdout(config: TrainConfig, progress: bool = False) -> TrainingData:
    """NIH class folders split once by the config's seed into train / validation / held-out test:
    ``data.test_fraction`` of each class's patients, plus every film of ``data.test_path``."""
    data = config.data
    dataset = open_training_source(config)
    extra = None
    if data.test_path is not None:
        extra = open_source("nih", resolve_nih_dir(data.test_path), **source_options(config))
    also = set(extra.meta["patient_id"].astype(str)) if extra is not None else set()
    real = from_source(hold_out_patients(dataset, data.test_fraction, data.seed, also), config, progress=progress)
    if extra is None:
        return real
    X_extra, extra = extra.load_inputs(progress=progress, cache_dir=data.cache_dir)
    parts = [(real.X_test, real.Y_test)] if real.X_test is not None else []
    parts.append((X_extra, extra.Y))
    real.X_test = np.concatenate([x for x, _ in parts])
    real.Y_test = np.concatenate([y for _, y in parts])
    real.split_ids["test"] = real.split_ids.get("test", []) + extra.ids
    real.counts[f"{extra.format}_test"] = len(real.X_test)
    real.test_origin = real.test_origin or extra.format
    real.description += f"; held-out test also holds all {len(extra)} films of {extra.path}"
    return real


def phantom_training_data(config: TrainConfig, real: TrainingData | None = None) -> TrainingData:
    """``data.n`` phantoms split into train / validation (+ ``data.test_n`` test phantoms from another
    seed stream). A phantom's label for a finding the ``real`` films do teach is masked (NaN): the
    phantoms only teach findings the real films hold no example of."""
    data = config.data
    size, channels = data.image_size, data.channels
    X, Y = make_phantoms(data.n, data.seed, data.phantom_size, size, channels, data.phantom_prevalence)
    real_labels = [i for i, code in enumerate(CXR_LABEL_CODES) if real is not None and real.learned_from_real.get(code)]
    Y[:, real_labels] = np.nan
    train_index, val_index = split(len(X), data.val_fraction, data.seed)
    X_test = Y_test = None
    if data.test_n:
        X_test, Y_test = make_phantoms(
            data.test_n, data.seed + TEST_SEED_OFFSET, data.phantom_size, size, channels, data.phantom_prevalence
        )
    return TrainingData(
        X_train=X[train_index],
        Y_train=Y[train_index],
        X_val=X[val_index],
        Y_val=Y[val_index],
        X_test=X_test,
        Y_test=Y_test,
        description=(
            f"{data.n} synthetic chest phantoms ({', '.join(PHANTOM_FINDINGS)}; prevalence "
            f"{data.phantom_prevalence:g} each, {data.phantom_size} px, seed {data.seed})"
        ),
        source=data.source,
        labels=list(CXR_LABEL_CODES),
        label_names=list(CXR_LABEL_NAMES),
        val_origin=np.full(len(val_index), "phantom"),
        test_origin="phantom" if X_test is not None else None,
        counts={"phantom_train": len(train_index), "phantom_val": len(val_index)},
    )


def combine(parts: list[TrainingData], config: TrainConfig, real: TrainingData | None) -> TrainingData:
    """Real films and phantoms as one training set; a real test split wins over the phantom one (the
    card reports one test set); what the model learned from real films comes from ``real`` alone."""
    test = next((p for p in parts if p.X_test is not None), None)
    return TrainingData(
        X_train=np.concatenate([p.X_train for p in parts]),
        Y_train=np.concatenate([p.Y_train for p in parts]),
        X_val=np.concatenate([p.X_val for p in parts]),
        Y_val=np.concatenate([p.Y_val for p in parts]),
        X_test=test.X_test if test else None,
        Y_test=test.Y_test if test else None,
        description="; ".join(p.description for p in parts) + f"; input {config.data.image_size} px letterboxed",
        source=config.data.source,
        labels=list(CXR_LABEL_CODES),
        label_names=list(CXR_LABEL_NAMES),
        val_origin=np.concatenate([p.val_origin for p in parts]),
        test_origin=test.test_origin if test else None,
        counts={k: v for p in parts for k, v in p.counts.items()},
        notes=[n for p in parts for n in p.notes],
        split_ids=real.split_ids if real is not None else {},
        learned_from_real={
            code: bool(real is not None and real.learned_from_real.get(code)) for code in CXR_LABEL_CODES
        },
    )


def load_cxr_training_data(config: TrainConfig, progress: bool = False) -> TrainingData:
    """A real layout (nih, chexpert, medmnist, dicom, worklist), phantoms, or NIH samples + phantoms."""
    data = config.data
    if data.source == "nih" and (data.test_fraction or data.test_path):
        return load_nih_with_holdout(config, progress)
    real = None
    if data.source != "phantom":
        real = from_source(open_training_source(config), config, progress=progress)
        if data.source != "nih+phantom":
            return real
    phantoms = phantom_training_data(config, real)
    return combine([p for p in (real, phantoms) if p is not None], config, real)

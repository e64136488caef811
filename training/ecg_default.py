"""The default ECG model: real ECGs, the five PTB-XL superclasses, a network and the measurements together.

Data (``data.source: ptbxl+cinc``; ``data.path`` the folder holding ``ptbxl/`` and ``cinc2021/``, by
default ``$PREREAD_SHARED_DATA/ecg`` or ../shared/data/ecg):

* PTB-XL (434 real records, strat folds 1–9): labels NORM, MI, STTC, CD, HYP from ``scp_codes`` as the
  PTB-XL benchmark aggregates them (``datasets.vocabulary.ecg.superclasses_of``); records without a
  diagnostic statement are dropped, as in the benchmark. Folds 1–8 train, fold 9 validates.
* The 30 CinC 2021 samples (Georgia, PTB-XL high-rate): superclasses implied by their SNOMED
  diagnoses (``snomed_superclasses``); NORM is unknown (masked) unless sinus rhythm is the only
  diagnosis. Training only.

No synthetic ECG is used: every superclass has real examples.

Model: the network (``fit`` in training/loop.py) learns the five labels from the signals; then a
logistic regression on the measurement suite's numbers (``datasets.ecg.measure``, called as the read
calls it) learns them from the measurements, its regularisation chosen by leave-one-fold-out over
folds 1–8; per label, the weight of the network against the measurements and the decision threshold
are chosen on fold 9 (``models.ecg.fusion``). Fold 9 is therefore a tuning set: its AUROCs are
reported with bootstrap intervals but are optimistic; the leave-one-fold-out AUROC of the measurement
model over folds 1–8 is an estimate on data not tuned on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import datasets.ecg.measure as measure_package
from datasets.sources import SourceDataset, load_cinc, load_ptbxl
from datasets.vocabulary.ecg import SUPERCLASS_CODES, PtbxlSuperclass
from models.card import fingerprint_arrays
from models.ecg.fusion import feature_names, feature_vector
from models.ecg.served_scores import measure_ecg_files
from training.config import TrainConfig
from training.data import REPO, SHARED_DATA_ENV, TrainingData

log = logging.getLogger(__name__)

TRAIN_FOLDS, TUNE_FOLD = tuple(range(1, 9)), 9
LABEL_NAMES = [PtbxlSuperclass(code).display_name for code in SUPERCLASS_CODES]


@dataclass
class DefaultEcgData(TrainingData):
    """TrainingData plus the measurement features of the same cases and the PTB-XL fold of each."""

    F_train: np.ndarray | None = None
    F_val: np.ndarray | None = None
    F_test: np.ndarray | None = None  # only with a held-out fold (hold-out estimate runs)
    features: list[str] = field(default_factory=list)
    folds_train: np.ndarray | None = None  # strat_fold per training case (0: CinC)

    def fingerprint(self) -> str:
        return fingerprint_arrays(self.X_train, self.Y_train, self.F_train)


def resolve_ecg_data_dir(path: str | Path | None) -> Path:
    """The folder with ``ptbxl/`` and ``cinc2021/``: ``path``, else $PREREAD_SHARED_DATA/ecg, else
    ../shared/data/ecg beside the repository."""
    candidates = (
        [Path(path)]
        if path is not None
        else (
            ([Path(os.environ[SHARED_DATA_ENV]) / "ecg"] if os.environ.get(SHARED_DATA_ENV) else [])
            + [REPO.parent / "shared" / "data" / "ecg"]
        )
    )
    for candidate in candidates:
        if (candidate / "ptbxl" / "ptbxl_database.csv").is_file():
            return candidate
    raise FileNotFoundError(
        f"real ECGs not found (tried {', '.join(map(str, candidates))}): expected ptbxl/ "
        f"and cinc2021/ there; set data.path or ${SHARED_DATA_ENV}"
    )


def _measurement_code_digest() -> str:
    """sha256 of the measurement suite's source: a changed delineator never reuses old features."""
    digest = hashlib.sha256()
    for path in sorted(Path(measure_package.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def measurement_features(
    dataset: SourceDataset, cache_dir: Path | None, progress: bool
) -> tuple[np.ndarray, list[str]]:
    """(features [n, k], names) of every case; cached by the cases and the measurement code."""
    key = hashlib.sha256(
        json.dumps(
            {"ids": dataset.ids, "path": str(dataset.path), "measure": _measurement_code_digest()}, sort_keys=True
        ).encode()
    ).hexdigest()[:24]
    cache = Path(cache_dir) / f"{dataset.format}-measurements-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            return stored["F"], [str(n) for n in stored["names"]]
    # measured as the read measures an upload (the quality verdicts are not needed to fit the head)
    measured = [m for m, _ in measure_ecg_files(dataset.meta["file"], progress, desc=f"{dataset.format} measurements")]
    names: list[str] = []
    for m in measured:
        names += [n for n in feature_names(m) if n not in names]
    F = np.stack([feature_vector(m, names) for m in measured]) if measured else np.zeros((0, 0))
    if cache is not None:  # written whole, then renamed: a concurrent run never reads half a file
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, F=F, names=np.asarray(names))
        os.replace(partial, cache)
    return F, names


def _align(F: np.ndarray, names: list[str], target: list[str]) -> np.ndarray:
    out = np.full((F.shape[0], len(target)), np.nan)
    for j, name in enumerate(target):
        if name in names:
            out[:, j] = F[:, names.index(name)]
    return out


def load_default_data(config: TrainConfig, progress: bool = False, held_out_fold: int | None = None) -> DefaultEcgData:
    """PTB-XL folds 1–8 + CinC samples (train) and PTB-XL fold 9 (validation), inputs and features.

    ``held_out_fold`` (one of 1–8): that fold is left out of training and tuning and becomes the test
    split, for an estimate of the whole recipe on data it never saw (``scripts/ecg_default_holdout.py``)."""
    root = resolve_ecg_data_dir(config.data.path)
    cache = Path(config.data.cache_dir) if config.data.cache_dir else None
    ptb = load_ptbxl(root / "ptbxl", label_set="superdiagnostic", sampling_rate=500)
    X_p, ptb = ptb.load_inputs(progress=progress, cache_dir=cache)
    cinc = load_cinc(root / "cinc2021", label_set="superclass")
    X_c, cinc = cinc.load_inputs(progress=progress, cache_dir=cache)
    F_p, names_p = measurement_features(ptb, cache, progress)
    F_c, names_c = measurement_features(cinc, cache, progress)
    names = names_p + [n for n in names_c if n not in names_p]
    F_p, F_c = _align(F_p, names_p, names), _align(F_c, names_c, names)
    Y_p, Y_c = ptb.label_matrix(SUPERCLASS_CODES), cinc.label_matrix(SUPERCLASS_CODES)
    folds = ptb.meta["strat_fold"].to_numpy()
    if held_out_fold is not None and held_out_fold not in TRAIN_FOLDS:
        raise ValueError(f"held_out_fold must be one of the training folds {TRAIN_FOLDS}, got {held_out_fold}")
    train = np.isin(folds, [f for f in TRAIN_FOLDS if f != held_out_fold])
    val, test = folds == TUNE_FOLD, folds == held_out_fold
    X_train = np.concatenate([X_p[train], X_c])
    counts = {"ptbxl_train": int(train.sum()), "cinc_train": len(X_c), "ptbxl_val": int(val.sum())}
    return DefaultEcgData(
        X_train=X_train,
        Y_train=np.concatenate([Y_p[train], Y_c]),
        X_val=X_p[val],
        Y_val=Y_p[val],
        X_test=X_p[test] if test.any() else None,
        Y_test=Y_p[test] if test.any() else None,
        F_test=F_p[test] if test.any() else None,
        description=(
            f"Real ECGs: PTB-XL (Wagner et al. 2020, CC BY 4.0) strat folds 1-8 ({counts['ptbxl_train']} "
            f"records) + {len(X_c)} PhysioNet/CinC 2021 samples for training, fold 9 "
            f"({counts['ptbxl_val']} records) for early stopping, fusion weights and thresholds; "
            f"labels: the PTB-XL diagnostic superclasses"
        ),
        source="ptbxl+cinc",
        labels=list(SUPERCLASS_CODES),
        label_names=LABEL_NAMES,
        label_set="superclass",
        counts=counts,
        notes=list(ptb.notes) + list(cinc.notes),
        split_ids={
            "train": [ptb.ids[i] for i in np.flatnonzero(train)] + cinc.ids,
            "val": [ptb.ids[i] for i in np.flatnonzero(val)],
            "test": [ptb.ids[i] for i in np.flatnonzero(test)],
        },
        F_train=np.concatenate([F_p[train], F_c]),
        F_val=F_p[val],
        features=names,
        folds_train=np.concatenate([folds[train], np.zeros(len(X_c), dtype=folds.dtype)]),
    )

"""The one typed form every on-disk layout is read into: :class:`SourceDataset`.

A source adapter (``datasets.sources.<layout>``) reads a layout's index files (CSV tables, WFDB
headers, an .npz, an export) into:

- ``labels`` / ``label_names``: the label columns (codes, and what a doctor reads);
- ``Y``: float32 ``[n, L]`` with 1 (present), 0 (absent) or NaN (the source says nothing about this
  label for this case: an uncertain CheXpert mention under the ``ignore`` policy, a finding the
  class folder does not name). Unknown is never silently 0; training masks NaN cells out of the
  loss and metrics skip them;
- ``meta``: one row per case with at least ``id``, ``patient_id`` (the unit of any split),
  ``split`` (``train`` / ``val`` / ``test`` when the layout defines one, else None), ``site``,
  ``sex`` (male / female / unknown), ``age`` (years or NaN), ``manufacturer``, plus what the layout
  knows (``file``, ``strat_fold``, ``view`` ...);
- ``loader``: case row → model input through THE preprocessing (``datasets.ecg.transforms`` /
  ``datasets.imaging.transforms``, the code serving runs), or None when the layout carries no
  signals or pixels (a de-identified signed-reads export).

Inputs are read lazily: indexing a 100 000-image layout reads its CSV only; ``load_inputs`` reads
and preprocesses the cases (with a progress bar, skipping unreadable ones with one summary
warning) and can cache the result on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from datasets.ecg.readers import read_dicom_waveform, read_json, read_wfdb
from datasets.ecg.record import EcgRecord
from datasets.ecg.transforms import preprocess_signals
from datasets.ecg.validate import validate_record
from datasets.imaging import read_image
from datasets.imaging.transforms import preprocess_image
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES, CXR_LABEL_NAMES
from datasets.vocabulary.ecg_labels import ECG_LABELS

META_COLUMNS = ("id", "patient_id", "split", "site", "sex", "age", "manufacturer")
SPLITS = ("train", "val", "test")

InputLoader = Callable[[Mapping[str, Any]], np.ndarray]


class SourceLayoutError(ValueError):
    """A data folder or file that does not have the layout its format promises; the message names
    the file (and column or row) and what was expected there."""


@dataclass
class SourceDataset:
    """Cases of one on-disk layout: labels, metadata, predefined split and a way to load inputs."""

    format: str
    path: Path
    task: str  # "ecg" or "cxr": which preprocessing ``loader`` applies
    labels: list[str]
    label_names: list[str]
    Y: np.ndarray  # float32 [n, L]: 1, 0 or NaN (unknown)
    meta: pd.DataFrame  # one row per case (META_COLUMNS and more)
    loader: InputLoader | None = None
    scores: np.ndarray | None = None  # [n, L] stored AI probabilities (signed-reads exports)
    notes: list[str] = field(default_factory=list)
    description: str = ""
    input_spec: dict[str, Any] = field(default_factory=dict)  # preprocessing parameters (cache key)

    def __post_init__(self) -> None:
        self.Y = np.asarray(self.Y, dtype=np.float32).reshape(len(self.meta), len(self.labels))
        if len(self.label_names) != len(self.labels):
            raise ValueError(f"{len(self.label_names)} label names for {len(self.labels)} labels")
        meta = self.meta.reset_index(drop=True).copy()
        for column, default in (
            ("patient_id", None),
            ("split", None),
            ("site", "unknown"),
            ("sex", "unknown"),
            ("age", np.nan),
            ("manufacturer", "unknown"),
        ):
            if column not in meta.columns:
                meta[column] = default
        if "id" not in meta.columns:
            raise ValueError("SourceDataset.meta needs an 'id' column")
        # A case without a patient id is its own patient (CinC, MedMNIST): splits stay valid.
        meta["patient_id"] = [
            str(p) if p is not None and not _is_nan(p) else str(i) for p, i in zip(meta["patient_id"], meta["id"])
        ]
        bad = sorted({str(s) for s in meta["split"] if s is not None and not _is_nan(s) and s not in SPLITS})
        if bad:
            raise ValueError(f"unknown split value(s) {bad}; expected {', '.join(SPLITS)} or empty")
        meta["split"] = [s if s in SPLITS else None for s in meta["split"]]
        self.meta = meta
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(self.Y.shape)

    # -- views ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in self.meta["id"]]

    @property
    def split(self) -> np.ndarray:
        return self.meta["split"].to_numpy(dtype=object)

    @property
    def has_split(self) -> bool:
        """True if the layout itself assigns some cases to validation or test."""
        return bool(np.isin(self.split, ("val", "test")).any())

    def subset(self, index: Sequence[int] | np.ndarray) -> SourceDataset:
        index = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            Y=self.Y[index],
            meta=self.meta.iloc[index].reset_index(drop=True),
            scores=self.scores[index] if self.scores is not None else None,
            notes=list(self.notes),
        )

    def where(self, mask: np.ndarray) -> SourceDataset:
        return self.subset(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def head(self, n: int | None) -> SourceDataset:
        return self if n is None or n >= len(self) else self.subset(np.arange(n))

    def label_matrix(self, codes: Sequence[str]) -> np.ndarray:
        """Y with columns ``codes`` (e.g. a model card's labels); codes this source lacks are NaN."""
        out = np.full((len(self), len(codes)), np.nan, dtype=np.float32)
        position = {code: j for j, code in enumerate(self.labels)}
        for k, code in enumerate(codes):
            if code in position:
                out[:, k] = self.Y[:, position[code]]
        return out

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Per label: positives, negatives and unknown cells."""
        out = {}
        for j, code in enumerate(self.labels):
            column = self.Y[:, j]
            out[code] = {
                "positive": int((column == 1).sum()),
                "negative": int((column == 0).sum()),
                "unknown": int(np.isnan(column).sum()),
            }
        return out

    # -- inputs ---------------------------------------------------------------------------------

    def load_input(self, i: int) -> np.ndarray:
        """The model input of case ``i`` (THE preprocessing)."""
        if self.loader is None:
            raise SourceLayoutError(
                f"{self.format} data at {self.path} carry no signals or images, only labels"
                + (f" ({self.notes[-1]})" if self.notes else "")
            )
        return np.asarray(self.loader(self.meta.iloc[i].to_dict()), dtype=np.float32)

    def load_inputs(
        self,
        progress: bool = False,
        cache_dir: str | Path | None = None,
    ) -> tuple[np.ndarray, SourceDataset]:
        """Read and preprocess every case → (X [n', ...] float32, the dataset of those n' cases).

        A case that cannot be read (damaged file, missing lead, rejected by the ECG acceptance
        checks) is skipped; one warning lists how many and the first reasons. With ``cache_dir``,
        the arrays are stored there keyed by the cases and the preprocessing, and reused.
        """
        if self.loader is None:
            self.load_input(0)  # raises the explanatory error
        cache = self._cache_file(cache_dir) if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                with np.load(cache) as stored:
                    return stored["X"], self.subset(stored["kept"])
            except (OSError, ValueError, KeyError):
                warnings.warn(f"ignoring a damaged input cache {cache}", stacklevel=2)
        X, kept, failures = [], [], []
        rows = self.meta.to_dict("records")
        for i, row in enumerate(tqdm(rows, desc=f"{self.format} inputs", disable=not progress, unit="case")):
            try:
                X.append(np.asarray(self.loader(row), dtype=np.float32))
                kept.append(i)
            except Exception as exc:  # noqa: BLE001 - one unreadable case must not stop a run
                failures.append(f"{row['id']}: {exc}")
        if not X:
            raise SourceLayoutError(
                f"none of the {len(rows)} {self.format} cases under {self.path} could be read; "
                f"first errors: {'; '.join(failures[:3])}"
            )
        if failures:
            warnings.warn(
                f"{self.format}: skipped {len(failures)} of {len(rows)} cases that could not be read "
                f"(first: {'; '.join(failures[:3])})",
                stacklevel=2,
            )
        stacked = np.stack(X).astype(np.float32, copy=False)
        if cache is not None:
            _save_atomic(cache, X=stacked, kept=np.asarray(kept, dtype=np.int64))
        return stacked, self.subset(kept)

    def _cache_file(self, cache_dir: str | Path) -> Path:
        key = json.dumps(
            {
                "format": self.format,
                "path": str(Path(self.path).resolve()),
                "task": self.task,
                "input": self.input_spec,
                "ids": self.ids,
            },
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return Path(cache_dir) / f"{self.format}-inputs-{digest}.npz"


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache location must not stop training
        warnings.warn(f"could not write input cache {path}: {exc}", stacklevel=3)
        tmp.unlink(missing_ok=True)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


# -- tables -------------------------------------------------------------------------------------


def read_table(file: Path, fmt: str, required: Iterable[str] = (), **read_csv: Any) -> pd.DataFrame:
    """A CSV with the columns a layout needs; errors name the file and the missing columns."""
    if not file.is_file():
        raise SourceLayoutError(f"{fmt}: {file} not found")
    try:
        table = pd.read_csv(file, **read_csv)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceLayoutError(f"{fmt}: cannot read {file} as CSV ({exc})") from None
    columns = set(table.columns) | ({table.index.name} if table.index.name else set())
    missing = [c for c in required if c not in columns]
    if missing:
        raise SourceLayoutError(
            f"{fmt}: {file} lacks column(s) {', '.join(repr(c) for c in missing)} "
            f"(it has {', '.join(repr(str(c)) for c in table.columns[:20])})"
        )
    return table


def normalise_sex(value: Any) -> str:
    """'M'/'F', 'Male'/'female', 0/1 are mapped by the caller; this takes text → male/female/unknown."""
    text = str(value if value is not None else "").strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(text, "unknown")


def multi_hot(
    positives: Sequence[Iterable[str]], labels: Sequence[str], known: Sequence[Iterable[str] | None] | None = None
) -> np.ndarray:
    """Rows of positive codes → [n, L] of 1/0; with ``known`` (per row: the codes the source speaks
    about, None = all), labels outside it are NaN."""
    Y = np.zeros((len(positives), len(labels)), dtype=np.float32)
    column = {code: j for j, code in enumerate(labels)}
    for i, codes in enumerate(positives):
        for code in codes:
            if code in column:
                Y[i, column[code]] = 1.0
        if known is not None and known[i] is not None:
            spoken = set(known[i]) | set(codes)
            for code, j in column.items():
                if code not in spoken:
                    Y[i, j] = np.nan
    return Y


def index_files(root: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """File name → path for every file with one of ``suffixes`` anywhere under ``root``."""
    wanted = {s.lower() for s in suffixes}
    found: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if Path(name).suffix.lower() in wanted:
                found.setdefault(name, Path(dirpath) / name)
    return found


# -- THE preprocessing, per case ------------------------------------------------------------------


def ecg_input(record: EcgRecord) -> np.ndarray:
    """An EcgRecord → network input (12 × 5000 float32): serving's acceptance checks
    (``validate_record``: all 12 leads, rate, duration, amplitudes) then ``preprocess_signals``."""

    record = validate_record(record)
    return preprocess_signals(record.signals, record.sampling_rate)


def read_ecg_file(path: str | Path) -> EcgRecord:
    """WFDB (.hea / record path / .zip), DICOM waveform (.dcm) or the JSON form → EcgRecord."""

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return read_dicom_waveform(path)
    if suffix == ".json":
        return read_json(json.loads(path.read_text(encoding="utf-8")))
    return read_wfdb(path)


def ecg_file_loader(column: str = "file") -> InputLoader:
    def load(row: Mapping[str, Any]) -> np.ndarray:
        return ecg_input(read_ecg_file(row[column]))

    return load


def image_file_loader(image_size: int, channels: int, column: str = "file") -> InputLoader:
    """PNG / JPEG / DICOM image → ``preprocess_image`` (letterbox + normalisation, as serving)."""

    def load(row: Mapping[str, Any]) -> np.ndarray:

        return preprocess_image(read_image(row[column]), size=image_size, channels=channels)

    return load


def served_labels(task: str) -> tuple[list[str], list[str]]:
    """(codes, names) of the label set preread serves for ``task``."""
    if task == "ecg":
        return [label.code for label in ECG_LABELS], [label.name for label in ECG_LABELS]
    if task == "cxr":
        return list(CXR_LABEL_CODES), list(CXR_LABEL_NAMES)
    raise ValueError(f"unknown task {task!r}; expected 'ecg' or 'cxr'")


def served_dataset(fmt: str, task: str, path: Path, Y: np.ndarray, meta: pd.DataFrame, **fields: Any) -> SourceDataset:
    """A dataset whose label columns are the served label set of ``task`` (``Y`` in that order)."""
    labels, names = served_labels(task)
    return SourceDataset(format=fmt, path=path, task=task, labels=labels, label_names=names, Y=Y, meta=meta, **fields)


def label_columns(task: str, labels: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(codes, names) of the label columns: ``labels`` (named as served where served, else by code),
    or the served label set of ``task``."""
    served, served_names = served_labels(task)
    codes = list(labels) if labels is not None else served
    return codes, [served_names[served.index(c)] if c in served else c for c in codes]


def ecg_input_spec(**extra: Any) -> dict[str, Any]:
    """The preprocessing parameters of an ECG source (part of its input cache key)."""
    return {"pipeline": "ecg_preprocess", **extra}


def cxr_input_spec(image_size: int, channels: int) -> dict[str, Any]:
    """The preprocessing parameters of a chest X-ray source (part of its input cache key)."""
    return {"size": image_size, "channels": channels, "pipeline": "cxr_preprocess"}


def check_choice(fmt: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{fmt}: {name} must be one of {', '.join(map(str, choices))}; got {value!r}")

"""Evaluation data: ``FORMAT:PATH[?k=v&...]`` → reference labels, model inputs and case metadata.

A thin wrapper over the dataset adapters in ``datasets.sources`` (the same readers training uses):
every :class:`EvalDataset` has the *model card's* labels as columns, in card order. A label the
source cannot say anything about for a case is NaN (unknown), never 0; metrics skip unknown cells.
Inputs go through THE preprocessing of datasets/ at the card's input size.

Formats (see ``datasets.sources`` for each layout)
  cinc      PhysioNet/CinC 2020–2021 WFDB folder (``*.hea`` with ``# Dx:`` SNOMED codes)
  ptbxl     PTB-XL root; the test fold (``?fold=10``, default), ``?rate=500|100``,
            ``?label_set=`` (default: ``preread`` for the served labels; a PTB-XL-trained card's set)
  nih       ChestX-ray14: ``Data_Entry_2017*.csv`` + images, or class folders
  chexpert  CheXpert CSV or folder; ``?uncertain=ones|zeros|ignore`` (default ignore), ``?views=frontal|all``
  medmnist  MedMNIST .npz (``?split=test``)
  dicom     folder of DICOM files + labels.csv
  worklist  export of signed reads (JSON or CSV): final findings are the reference; the AI's
            stored probabilities are the scores (no inference needed; ``?all_models=1`` keeps other models' reads)

Query options after ``?`` (``cinc:/data/x?limit=10``): ``limit`` (all formats), format-specific keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from datasets.sources import FORMATS, SourceDataset, open_source
from datasets.sources.ptbxl import LABEL_SETS as PTBXL_LABEL_SETS
from datasets.sources.worklist import signed_reads_dataset
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from models.ecg.served_scores import MeasuredEcg, measure_ecg_files, unreadable_mask

# Metadata columns an evaluation reports subgroups on or shows; adapter-internal ones stay out.
EVAL_META = ("id", "file", "site", "sex", "age", "age_band", "manufacturer", "view", "signed_at")


@dataclass
class EvalDataset:
    """What an evaluation needs. ``inputs`` is None when ``scores`` are given (worklist)."""

    name: str
    labels: list[str]
    Y: np.ndarray  # [n, L] float: 1, 0 or NaN (unknown)
    meta: pd.DataFrame  # one row per case: id, site, sex, age, manufacturer ...
    inputs: np.ndarray | None = None  # [n, ...] float32 preprocessed model inputs
    scores: np.ndarray | None = None  # [n, L] precomputed probabilities (worklist exports)
    notes: list[str] = field(default_factory=list)
    # ECGs: each record's measurements and quality verdict as the read makes them (ecg_measurements)
    measured: list[MeasuredEcg] | None = None

    def __len__(self) -> int:
        return len(self.Y)


def parse_data_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``"cinc:/path?limit=5"`` → ("cinc", Path("/path"), {"limit": "5"})."""
    fmt, sep, rest = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or fmt not in FORMATS:
        raise ValueError(f"--data must be FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}; got {spec!r}")
    path, _, query = rest.partition("?")
    return fmt, Path(path).expanduser(), dict(parse_qsl(query))


def _image_size(card) -> tuple[int, int]:
    shape = list(card.input.shape) if card is not None else [None, 3, 224, 224]
    return int(shape[-1]), int(shape[1]) if len(shape) == 4 else 1


def _ptbxl_label_set(card, options: dict[str, str]) -> str:
    if "label_set" in options:
        return options["label_set"]
    if card is None or set(card.labels) <= set(ECG_LABEL_CODES):
        return "preread"
    source = (card.training_data.source or "") if card.training_data else ""
    candidate = source.partition(":")[2]
    if candidate in PTBXL_LABEL_SETS:
        return candidate
    raise ValueError(
        f"the card's labels are not the served ECG labels; say which PTB-XL label set they are "
        f"with ?label_set= ({', '.join(PTBXL_LABEL_SETS)})"
    )


def _source_options(fmt: str, card, options: dict[str, str]) -> dict[str, Any]:
    """Query options → the adapter's keywords for this card."""
    out: dict[str, Any] = {}
    if fmt == "ptbxl":
        out.update(label_set=_ptbxl_label_set(card, options), sampling_rate=int(options.get("rate", 500)))
        if "min_likelihood" in options:
            out["min_likelihood"] = float(options["min_likelihood"])
    elif fmt == "cinc":
        out["label_set"] = options.get("label_set", "preread")
    if fmt in ("nih", "chexpert", "medmnist", "dicom", "worklist") and (card is None or card.task == "cxr"):
        out["image_size"], out["channels"] = _image_size(card)
    if fmt == "chexpert":
        out.update(uncertain=options.get("uncertain", "ignore"), views=options.get("views", "frontal"))
    if fmt == "medmnist":
        out["splits"] = (options.get("split", "test"),)
    if fmt in ("dicom", "worklist"):
        out.update(
            task=card.task if card is not None else "cxr", labels=list(card.labels) if card is not None else None
        )
    if fmt == "worklist" and card is not None and options.get("all_models") != "1":
        out["model_name"] = card.name
    return out


def to_eval_dataset(
    source: SourceDataset, card_labels: Sequence[str], name: str, with_inputs: bool = True
) -> EvalDataset:
    """A SourceDataset → EvalDataset in card label order (inputs read unless scores are stored)."""
    inputs = None
    if source.scores is not None:
        scores = np.full((len(source), len(card_labels)), np.nan)
        position = {c: j for j, c in enumerate(source.labels)}
        for k, code in enumerate(card_labels):
            if code in position:
                scores[:, k] = source.scores[:, position[code]]
        missing = np.isnan(scores).any(axis=1)
        if missing.any():
            dropped = f"{int(missing.sum())} signed reads without AI probabilities for every label were dropped"
            warnings.warn(dropped, stacklevel=3)  # points at whoever asked for the dataset
        source, scores = source.where(~missing), scores[~missing]
    else:
        scores = None
        if with_inputs and len(source):
            inputs, source = source.load_inputs()
    meta = source.meta[[c for c in EVAL_META if c in source.meta.columns]].reset_index(drop=True)
    return EvalDataset(
        name,
        list(card_labels),
        source.label_matrix(card_labels).astype(np.float64),
        meta,
        inputs=inputs,
        scores=scores,
        notes=list(source.notes),
    )


def signed_reads_to_dataset(records: list[dict], card_labels: Sequence[str], name: str = "worklist") -> EvalDataset:
    """Rows with ``final_findings`` (reference) and ``ai_read`` / ``ai_findings`` (scores). When a
    study was signed more than once (amendments), the last row for it is the reference."""
    return to_eval_dataset(signed_reads_dataset(records, list(card_labels)), card_labels, name)


def load_eval_dataset(spec: str, card) -> EvalDataset:
    """``FORMAT:PATH[?k=v&...]`` for a model with this card."""
    fmt, path, options = parse_data_spec(spec)
    if not path.exists():
        raise FileNotFoundError(f"{fmt} data not found at {path}")
    source = open_source(fmt, path, **_source_options(fmt, card, options))
    name = f"{fmt}:{path}"
    if fmt == "ptbxl":
        folds = [int(f) for f in options.get("fold", "10").split(",")]
        source = source.where(source.meta["strat_fold"].isin(folds).to_numpy())
        if not len(source):
            raise ValueError(f"no PTB-XL records in fold(s) {folds} under {path}")
        name += f" fold {','.join(map(str, folds))}"
    elif fmt == "medmnist":
        name += f" {options.get('split', 'test')}"
    if "limit" in options:
        source = source.head(int(options["limit"]))
    return to_eval_dataset(source, list(card.labels), name)


def ecg_measurements(dataset: EvalDataset, progress: bool = True) -> list[MeasuredEcg]:
    """Every ECG's measurements and quality verdict, as the read makes them (measured once per dataset:
    the champion and the challenger of a gate share them). The ECGs the read would call unreadable are
    counted in the dataset's notes."""
    if dataset.measured is None:
        if "file" not in dataset.meta.columns:
            raise ValueError(f"{dataset.name}: the ECG records' files are not known, so they cannot be measured")
        dataset.measured = measure_ecg_files(dataset.meta["file"], progress=progress)
        unreadable = int(unreadable_mask(dataset.measured).sum())
        if unreadable:
            dataset.notes.append(
                f"{unreadable} of {len(dataset)} ECGs fail the read's quality check ('repeat the ECG'): the read "
                "calls no finding on them, so they score 0 for every label (negative at every threshold)"
            )
    return dataset.measured

"""An ECG model's scores as its read makes them, over many stored records at once.

The read (models/ecg/pipeline.py) measures every ECG, judges its quality on the same numbers and, when
the card has a fusion head (models/ecg/fusion.py), combines the network's probabilities with those
measurements; the card's thresholds were chosen on the combined numbers. Whoever scores a model on a
dataset — `preread evaluate`, the champion/challenger gate, training's fusion fit — measures its records
here, with the read's own function (``measure_and_check``), so that no figure is computed on a number
the doctors never see.

An ECG the read calls unreadable ("repeat the ECG") gets no positive finding whatever its probabilities;
:func:`served_scores` therefore scores it 0 for every label: a negative at every threshold, which is
what the read calls it (a quality check that rejects the hard cases cannot flatter the figures).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.ecg.measure import EcgMeasurements
from datasets.ecg.quality import QualityVerdict
from datasets.ecg.validate import validate_record
from datasets.sources.base import read_ecg_file
from models.card import ModelCard
from models.ecg.fusion import FusionHead
from models.ecg.pipeline import EcgInput, measure_and_check

__all__ = ["MeasuredEcg", "ecg_input_from_file", "measure_ecg_files", "served_scores", "unreadable_mask"]

MeasuredEcg = tuple[EcgMeasurements, QualityVerdict]


def ecg_input_from_file(path: str | Path) -> EcgInput:
    """A stored ECG (WFDB, DICOM waveform, JSON) as the read receives an upload: read, then checked and
    put in standard-lead order by the acceptance checks (``validate_record`` raises ``EcgInputError``
    where an upload would be refused)."""
    record = validate_record(read_ecg_file(path))
    return EcgInput(record.signals, record.sampling_rate, patient=dict(record.patient))


def measure_ecg_files(
    paths: Iterable[str | Path], progress: bool = True, desc: str = "ECG measurements"
) -> list[MeasuredEcg]:
    """The measurements and quality verdict of every stored ECG, as the read makes them (with a
    progress bar: a few hundred records take a minute)."""
    paths = list(paths)
    return [
        measure_and_check(ecg_input_from_file(path))
        for path in tqdm(paths, desc=desc, unit="ECG", disable=not progress)
    ]


def unreadable_mask(measured: Sequence[MeasuredEcg]) -> np.ndarray:
    """[n] bool: the ECGs whose quality verdict the read turns into "repeat the ECG"."""
    return np.array([not verdict.acceptable for _, verdict in measured], dtype=bool)


def served_scores(card: ModelCard, network_probabilities: np.ndarray, measured: Sequence[MeasuredEcg]) -> np.ndarray:
    """[n, labels] the scores the read's findings stand on: the network's probabilities combined with the
    measurements by the card's fusion head (when it has one), and 0 for every label of an ECG the read
    calls unreadable (it calls no finding on it)."""
    P = np.asarray(network_probabilities, dtype=np.float64)
    if len(measured) != len(P):
        raise ValueError(f"{len(P)} rows of network probabilities but {len(measured)} measured ECGs")
    if card.fusion:
        P = FusionHead.model_validate(card.fusion).apply(P, [m for m, _ in measured])
    return np.where(unreadable_mask(measured)[:, None], 0.0, P)

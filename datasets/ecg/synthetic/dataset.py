"""Labelled synthetic ECG datasets: the label mix, and ``make_synthetic_ecg_dataset`` (preprocessed exactly
as at serving time, deterministic in (n, seed, generator version), cached as npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.synthetic.cache import GENERATOR_VERSION, atomic_savez
from datasets.ecg.synthetic.record import LABEL_CODES, simulate_ecg
from datasets.ecg.synthetic.templates import load_templates
from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS, preprocess_signals

# Label mix of make_synthetic_ecg_dataset: rhythm probabilities, then independent morphology labels.
RHYTHM_PROBABILITIES = {"NORM": 0.4, "STACH": 0.2, "SBRAD": 0.2, "AF": 0.2}
MORPHOLOGY_PROBABILITIES = {"STE": 0.25, "WQRS": 0.2, "PREM": 0.2}


def sample_label_set(rng: np.random.Generator) -> set[str]:
    """A label combination from the dataset mix: one rhythm, then each morphology label independently."""
    rhythm = str(rng.choice(list(RHYTHM_PROBABILITIES), p=list(RHYTHM_PROBABILITIES.values())))
    return {rhythm} | {code for code, p in MORPHOLOGY_PROBABILITIES.items() if rng.random() < p}


def labels_to_vector(labels: list[str] | set[str]) -> np.ndarray:
    """Multi-hot float32 in LABEL_CODES order."""
    return np.array([code in labels for code in LABEL_CODES], dtype=np.float32)


def dataset_cache_path(cache_dir: Path, n: int, seed: int) -> Path:
    """Where ``make_synthetic_ecg_dataset(n, seed)`` keeps its arrays under ``cache_dir``."""
    return Path(cache_dir) / f"synthetic-ecg-n{n}-seed{seed}-v{GENERATOR_VERSION}.npz"


def make_synthetic_ecg_dataset(
    n: int, seed: int, cache_dir: Path | str | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled synthetic records, preprocessed exactly as at serving time.

    Returns ``(X, Y)``: X float32 [n, 12, 5000] (``preprocess_signals`` output), Y float32
    [n, len(LABEL_CODES)] multi-hot in LABEL_CODES order. Deterministic in (n, seed,
    GENERATOR_VERSION): record i uses its own child seed, so the first k records of a larger set
    equal a set of k. With ``cache_dir`` the arrays are cached there as npz (and so are the
    beat templates).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    path = dataset_cache_path(Path(cache_dir), n, seed) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as data:
                X, Y = data["X"], data["Y"]
            if X.shape == (n, len(STANDARD_LEADS), int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)) and Y.shape == (
                n,
                len(LABEL_CODES),
            ):
                return X, Y
        except (OSError, KeyError, ValueError):
            pass  # damaged or foreign file: regenerate
    templates_dir = Path(cache_dir) if cache_dir is not None else None
    load_templates(templates_dir)
    X = np.empty((n, len(STANDARD_LEADS), int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)), dtype=np.float32)
    Y = np.empty((n, len(LABEL_CODES)), dtype=np.float32)
    children = np.random.SeedSequence([seed, GENERATOR_VERSION]).spawn(n)
    for i in tqdm(range(n), desc="synthetic ECGs", disable=not progress, unit="rec", mininterval=1.0):
        rng = np.random.default_rng(children[i])
        record = simulate_ecg(sample_label_set(rng), rng, cache_dir=templates_dir)
        X[i] = preprocess_signals(record.signals, record.sampling_rate)
        Y[i] = labels_to_vector(record.labels)
    if path is not None:
        atomic_savez(path, X=X, Y=Y)
    return X, Y

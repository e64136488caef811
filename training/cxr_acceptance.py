"""Fit the acceptance check's image model (datasets/imaging/orientation.py) on real chest films.

    python -m training.cxr_acceptance [--config configs/train/cxr-demo.yaml] [--out datasets/imaging/orientation.npz]

Films: the default chest X-ray model's training + validation films (the config's split, so its
held-out test films are never seen here either). Each film gives its eight variants (4 rotations ×
2 polarities) three times, with a random zoom/shift (crop of 80–100 % of the film), gamma and, half
the time, a white or black frame 3–15 % wide. A
multinomial logistic regression (scikit-learn) on the 32 × 32 standardised thumbnails; the chest
cut-off is the 0.5th percentile of the training films' template correlation, less 0.05. The script
then reports accuracy on the held-out test films' variants (printed; docs/models.md quotes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.imaging import read_image
from datasets.imaging.orientation import (
    CLASSES,
    WEIGHTS_PATH,
    OrientationModel,
    thumbnail,
    variant,
)
from training.config import load_train_config
from training.cxr_data import hold_out_patients
from training.data import open_training_source, resolve_nih_dir

REPO = Path(__file__).resolve().parents[1]
COPIES = 3


def _jitter(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = pixels.shape
    keep = rng.uniform(0.8, 1.0)
    h, w = int(rows * keep), int(cols * keep)
    top, left = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
    crop = np.clip(pixels[top : top + h, left : left + w], 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.5:
        # A frame around the exposed field, white or black (scanned films, collimation): seen in real
        # films, and the thing that fooled a first fit into "rotated and inverted".
        width = int(rng.uniform(0.03, 0.15) * max(h, w))
        crop = np.pad(crop, width, constant_values=float(rng.choice([0.0, rng.uniform(0.8, 1.0)])))
    return crop


def features_of(films: list[np.ndarray], rng: np.random.Generator | None, copies: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = [], []
    for pixels in tqdm(films, desc="thumbnails", leave=False):
        for _ in range(copies):
            base = _jitter(pixels, rng) if rng is not None else pixels
            for label, (angle, inverted) in enumerate(CLASSES):
                X.append(thumbnail(variant(base, angle, inverted)))
                y.append(label)
    return np.stack(X), np.array(y)


def load_films(config_path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training + validation films, held-out test films) of the config's split, as display pixels."""
    config = load_train_config(config_path)
    dataset = hold_out_patients(open_training_source(config), config.data.test_fraction, config.data.seed)
    test_mask = dataset.split == "test"
    files = list(dataset.meta["file"])
    fit = [read_image(f).pixels for f, is_test in zip(files, test_mask) if not is_test]
    held_out = [read_image(f).pixels for f, is_test in zip(files, test_mask) if is_test]
    if config.data.test_path is not None:
        held_out += [read_image(f).pixels for f in sorted(resolve_nih_dir(config.data.test_path).rglob("*.png"))]
    return fit, held_out


def fit_orientation(fit: list[np.ndarray], seed: int = 0) -> OrientationModel:
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - scikit-learn is heavy: loaded when fitting

    rng = np.random.default_rng(seed)
    X, y = features_of(fit, rng, COPIES)
    classifier = LogisticRegression(C=0.05, max_iter=2000)
    classifier.fit(X, y)
    upright = np.stack([thumbnail(p) for p in fit])
    template = upright.mean(axis=0)
    template = (template - template.mean()) / template.std()
    model = OrientationModel(classifier.coef_, classifier.intercept_, template, 0.0)
    similarities = np.array([model.similarity(p) for p in fit])
    model.chest_cutoff = float(np.percentile(similarities, 0.5) - 0.05)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "cxr-demo.yaml")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    fit, held_out = load_films(args.config)
    model = fit_orientation(fit)
    X, y = features_of(held_out, None, 1)
    predicted = model.probabilities(X).argmax(axis=1)
    similarities = np.array([model.similarity(p) for p in held_out])
    below_cutoff = int((similarities < model.chest_cutoff).sum())
    print(
        f"fitted on {len(fit)} films x {COPIES} x {len(CLASSES)} variants; held-out {len(held_out)} films: "
        f"orientation/polarity accuracy {float((predicted == y).mean()):.4f} over {len(y)} variants; "
        f"chest cut-off {model.chest_cutoff:.3f}, held-out films below it: {below_cutoff}"
    )
    model.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

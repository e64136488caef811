"""Image evidence for the acceptance check: is this a frontal chest film, the right way up, with
the right polarity?

A softmax regression on a 32 × 32 thumbnail (letterboxed, then standardised per image: zero mean,
unit variance), with eight classes: the film as sent, rotated by 90°, 180° and 270° (clockwise), and
each of those with inverted grey levels. It was fitted on real chest films (the training and
validation films of the default chest X-ray model, ../shared/data/cxr/nih-train, never its held-out
test films) and their rotated / inverted copies, with small shifts, zooms, contrast changes and white or black frames
(``training/cxr_acceptance.py``; the weights are ``orientation.npz`` beside this module, ~70 kB).

A second number says whether the image looks like a chest film at all: the correlation of the
upright-corrected thumbnail with the mean upright film of the training set. Its cut-off is the
0.5th percentile over the training films (stored with the weights). It is a coarse check: it
separates chest films from CT/MR slices, ultrasound and photographs, not a chest from an abdomen
film.

What it cannot do (no training data): tell a lateral view from a frontal one (the acceptance check
uses the header for that), or a child's film from an adult's.

numpy only (no torch): ingest and the reader use it without loading a network stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.imaging.transforms import LetterboxGeometry

THUMBNAIL = 32
WEIGHTS_PATH = Path(__file__).with_name("orientation.npz")
# Class index → (clockwise rotation in degrees that was applied to an upright film, inverted?).
CLASSES: tuple[tuple[int, bool], ...] = tuple(
    (angle, inverted) for inverted in (False, True) for angle in (0, 90, 180, 270)
)


def thumbnail(pixels: np.ndarray, side: int = THUMBNAIL) -> np.ndarray:
    """(H, W) in [0, 1] → standardised (side * side,) float32 feature vector (letterboxed, grey padding
    at the image's own mean so the padding carries no orientation cue)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    geometry = LetterboxGeometry.for_shape(pixels.shape, side)
    small = geometry.apply(pixels, pad_value=float(pixels.mean()))
    flat = small.reshape(-1).astype(np.float64)
    std = flat.std()
    return ((flat - flat.mean()) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def variant(pixels: np.ndarray, angle: int, inverted: bool) -> np.ndarray:
    """An upright film rotated clockwise by ``angle`` and optionally inverted: the classes' meaning."""
    out = np.rot90(pixels, k=-(angle // 90))
    return (1.0 - out) if inverted else out


@dataclass(frozen=True)
class OrientationEvidence:
    """What the image says: the most likely class and the chest-likeness of the corrected image."""

    rotation: int  # degrees clockwise the film appears rotated by (0, 90, 180, 270)
    inverted: bool  # grey levels appear inverted (bone dark, lungs bright)
    probability: float  # of that class
    chest_similarity: float  # correlation with the mean upright chest film, after correction
    chest_cutoff: float  # below it the image does not look like a chest film

    @property
    def looks_like_chest(self) -> bool:
        return self.chest_similarity >= self.chest_cutoff


class OrientationModel:
    """The fitted softmax regression + chest template (see module docstring)."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, template: np.ndarray, chest_cutoff: float):
        self.weights = np.asarray(weights, dtype=np.float32)  # (classes, features)
        self.bias = np.asarray(bias, dtype=np.float32)  # (classes,)
        self.template = np.asarray(template, dtype=np.float32)  # (features,), standardised upright mean
        self.chest_cutoff = float(chest_cutoff)
        if self.weights.shape != (len(CLASSES), THUMBNAIL * THUMBNAIL):
            raise ValueError(f"orientation weights have shape {self.weights.shape}")

    @classmethod
    def load(cls, path: str | Path = WEIGHTS_PATH) -> OrientationModel:
        with np.load(path) as data:
            return cls(data["weights"], data["bias"], data["template"], float(data["chest_cutoff"]))

    def save(self, path: str | Path = WEIGHTS_PATH) -> Path:
        np.savez_compressed(
            path,
            weights=self.weights,
            bias=self.bias,
            template=self.template,
            chest_cutoff=np.float32(self.chest_cutoff),
        )
        return Path(path)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, features) → (N, classes) softmax probabilities."""
        logits = np.atleast_2d(features) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        expo = np.exp(logits)
        return expo / expo.sum(axis=1, keepdims=True)

    def similarity(self, pixels: np.ndarray) -> float:
        """Correlation of an (upright, right-polarity) image's thumbnail with the chest template."""
        features = thumbnail(pixels)
        return float(features @ self.template / (np.linalg.norm(features) * np.linalg.norm(self.template) + 1e-9))

    def evidence(self, pixels: np.ndarray) -> OrientationEvidence:
        probs = self.probabilities(thumbnail(pixels))[0]
        best = int(np.argmax(probs))
        angle, inverted = CLASSES[best]
        # Undo what the class says was done, then compare with the upright template.
        corrected = np.rot90(np.asarray(pixels, dtype=np.float32), k=angle // 90)
        corrected = (1.0 - corrected) if inverted else corrected
        return OrientationEvidence(angle, inverted, float(probs[best]), self.similarity(corrected), self.chest_cutoff)


_DEFAULT: OrientationModel | None = None


def default_orientation_model() -> OrientationModel:
    """The committed model (loaded once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = OrientationModel.load()
    return _DEFAULT

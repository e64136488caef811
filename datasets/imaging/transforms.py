"""Chest radiograph preprocessing shared by training and serving.

The pipeline, a ``monai.transforms.Compose`` of dictionary transforms (``cxr_preprocess``): MONAI's
own where they fit, the project's own as MONAI ``Transform`` / ``MapTransform`` pairs where MONAI has
no equivalent:

1. ``EnsureUnitRanged`` (ours): intensities in [0, 1] (readers already deliver that; hand-made arrays
   outside it are min-max scaled).
2. ``LetterboxResized`` (ours): aspect-preserving resize so the longer side is ``size``, then
   symmetric zero (black) padding to ``size × size``. A squash would distort heart width
   (cardiomegaly is a ratio); black padding looks like collimation, which the network sees in real
   data anyway. The geometry (``LetterboxGeometry``) is stored under ``"geometry"`` so heatmaps can be
   mapped back onto the original image. (MONAI's ``ResizeWithPadOrCrop`` does not keep the aspect
   and ``Resize(size_mode="longest")`` + ``SpatialPad`` does not record the geometry; the resize is
   PIL's antialiased bilinear, which the trained models expect.)
3. ``EnsureChannelFirstd`` (MONAI): (size, size) → (1, size, size).
4. ``RepeatChanneld`` (MONAI, only when ``channels == 3``).
5. ``NormalizeIntensityd`` (MONAI, channel-wise): ImageNet-style ``(x - mean) / std``. With one
   channel (the default) the mean and std are the averages of the ImageNet RGB values (0.449, 0.226);
   with three they are the usual per-channel values.

Output: float32 ``(channels, size, size)``; default ``channels=1, size=224``. We chose one channel
because no pretrained weights are downloaded (no internet) and radiographs are grayscale.

MONAI (and torch) load only when a pipeline is first built: the geometry here is numpy-only, so
ingest and the acceptance check import this module cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from datasets.imaging.record import ImageRecord

DEFAULT_SIZE = 224
DEFAULT_CHANNELS = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# One-channel equivalents: the average over R, G, B of the ImageNet statistics.
IMAGENET_GRAY_MEAN = float(np.mean(IMAGENET_MEAN))
IMAGENET_GRAY_STD = float(np.mean(IMAGENET_STD))


def normalisation_for(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel used by ``cxr_preprocess`` for 1 or 3 channels."""
    if channels == 1:
        return (IMAGENET_GRAY_MEAN,), (IMAGENET_GRAY_STD,)
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    raise ValueError(f"channels must be 1 or 3, not {channels}")


def resize_2d(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float array to (rows, cols), antialiased when shrinking (PIL)."""
    rows, cols = int(shape[0]), int(shape[1])
    array = np.asarray(array, dtype=np.float32)
    if array.shape == (rows, cols):
        return array.copy()
    image = Image.fromarray(np.ascontiguousarray(array))
    return np.asarray(image.resize((cols, rows), resample=Image.Resampling.BILINEAR), dtype=np.float32)


@dataclass(frozen=True)
class LetterboxGeometry:
    """How an image of ``original_shape`` was placed in the ``size × size`` network input.

    The image was resized to ``resized_shape`` (aspect preserved, longer side = size) and pasted
    with its top-left corner at ``offset`` (top, left); the rest is padding. The geometry depends
    only on the original shape and the size, so it can always be recomputed with ``for_shape``.
    """

    original_shape: tuple[int, int]
    size: int
    resized_shape: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def for_shape(cls, shape: Sequence[int], size: int = DEFAULT_SIZE) -> LetterboxGeometry:
        rows, cols = int(shape[-2]), int(shape[-1])
        if rows < 1 or cols < 1:
            raise ValueError(f"empty image shape {shape}")
        scale = size / max(rows, cols)
        resized = (min(size, max(1, round(rows * scale))), min(size, max(1, round(cols * scale))))
        offset = ((size - resized[0]) // 2, (size - resized[1]) // 2)
        return cls((rows, cols), int(size), resized, offset)

    @property
    def scale(self) -> tuple[float, float]:
        """(row, column) factors from original pixels to input pixels (nearly equal; rounding)."""
        return (self.resized_shape[0] / self.original_shape[0], self.resized_shape[1] / self.original_shape[1])

    def to_input(self, row: float, col: float) -> tuple[float, float]:
        """Original pixel coordinates (row, col; pixel centres at integers) → input coordinates."""
        sr, sc = self.scale
        return ((row + 0.5) * sr - 0.5 + self.offset[0], (col + 0.5) * sc - 0.5 + self.offset[1])

    def to_original(self, row: float, col: float) -> tuple[float, float]:
        """Input coordinates → original pixel coordinates (inverse of ``to_input``)."""
        sr, sc = self.scale
        return ((row - self.offset[0] + 0.5) / sr - 0.5, (col - self.offset[1] + 0.5) / sc - 0.5)

    def apply(self, image: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
        """(…, H, W) original → (…, size, size) letterboxed."""
        image = np.asarray(image, dtype=np.float32)
        if image.shape[-2:] != self.original_shape:
            raise ValueError(f"image shape {image.shape[-2:]} does not match geometry {self.original_shape}")
        lead = image.shape[:-2]
        flat = image.reshape((-1,) + self.original_shape)
        out = np.full((flat.shape[0], self.size, self.size), pad_value, dtype=np.float32)
        top, left = self.offset
        rows, cols = self.resized_shape
        for index, plane in enumerate(flat):
            out[index, top : top + rows, left : left + cols] = resize_2d(plane, self.resized_shape)
        return out.reshape(lead + (self.size, self.size))

    def invert(self, array: np.ndarray) -> np.ndarray:
        """(…, size, size) in input space → (…, H, W) in original image space (drop padding, resize).

        Used to put a Grad-CAM heatmap back on the image a reader sees.
        """
        array = np.asarray(array, dtype=np.float32)
        if array.shape[-2:] != (self.size, self.size):
            raise ValueError(f"array shape {array.shape[-2:]} is not the input size {(self.size, self.size)}")
        top, left = self.offset
        rows, cols = self.resized_shape
        lead = array.shape[:-2]
        crop = array.reshape((-1, self.size, self.size))[:, top : top + rows, left : left + cols]
        out = np.stack([resize_2d(plane, self.original_shape) for plane in crop])
        return out.reshape(lead + self.original_shape)


def heatmap_to_original(heatmap: np.ndarray, original_shape: Sequence[int]) -> np.ndarray:
    """Map heatmaps (…, size, size) from network-input space back onto an image of ``original_shape``.

    Undoes the letterbox (padding removed, resize inverted); values are clipped to [0, 1].
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape[-1] != heatmap.shape[-2]:
        raise ValueError(f"heatmap must be square (network input space), got {heatmap.shape}")
    geometry = LetterboxGeometry.for_shape(original_shape, heatmap.shape[-1])
    return np.clip(geometry.invert(heatmap), 0.0, 1.0)


# --- transforms: array / dictionary pairs on MONAI's bases ---------------------------------------
#
# MONAI is imported when a pipeline is built, not with this module: ingest and the acceptance check
# use the geometry above without loading torch.


def _monai():
    import monai.transforms as mt  # noqa: PLC0415 - heavy (torch); loaded only when a MONAI pipeline is built

    return mt


def ensure_unit_range(array: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; arrays already in range are left alone (readers have windowed them); others
    are min-max scaled (a flat image becomes zeros), non-finite values become 0."""
    array = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return array
    if high <= low:
        return np.zeros_like(array)
    return ((array - low) / (high - low)).astype(np.float32)


def letterbox(
    array: np.ndarray, size: int = DEFAULT_SIZE, pad_value: float = 0.0
) -> tuple[np.ndarray, LetterboxGeometry]:
    """Channel-first (C, H, W) → (C, size, size) letterboxed, with its geometry."""
    geometry = LetterboxGeometry.for_shape(np.shape(array), size)
    return geometry.apply(np.asarray(array), pad_value), geometry


def _transform_classes() -> dict[str, type]:
    """The project's own transforms as MONAI Transform / MapTransform pairs (built on first use)."""
    mt = _monai()

    class EnsureUnitRange(mt.Transform):
        """Array transform: ``ensure_unit_range``."""

        def __call__(self, img):
            return ensure_unit_range(np.asarray(img))

    class EnsureUnitRanged(mt.MapTransform):
        """Dictionary transform: ``EnsureUnitRange`` on each key."""

        def __call__(self, data):
            out = dict(data)
            for key in self.key_iterator(out):
                out[key] = ensure_unit_range(np.asarray(out[key]))
            return out

    class Letterbox(mt.Transform):
        """Array transform: aspect-preserving resize + symmetric padding to ``size × size``."""

        def __init__(self, size: int = DEFAULT_SIZE, pad_value: float = 0.0) -> None:
            self.size, self.pad_value = int(size), float(pad_value)

        def __call__(self, img):
            return letterbox(np.asarray(img), self.size, self.pad_value)[0]

    class LetterboxResized(mt.MapTransform):
        """Dictionary transform: ``Letterbox`` on each key; the first key's geometry is stored under
        ``geometry_key`` so heatmaps can be mapped back onto the original image."""

        def __init__(
            self,
            keys,
            size: int = DEFAULT_SIZE,
            pad_value: float = 0.0,
            geometry_key: str = "geometry",
            allow_missing_keys: bool = False,
        ) -> None:
            super().__init__(keys, allow_missing_keys)
            self.size, self.pad_value, self.geometry_key = int(size), float(pad_value), geometry_key

        def __call__(self, data):
            out = dict(data)
            for key in self.key_iterator(out):
                out[key], geometry = letterbox(np.asarray(out[key]), self.size, self.pad_value)
                out.setdefault(self.geometry_key, geometry)
            return out

    return {cls.__name__: cls for cls in (EnsureUnitRange, EnsureUnitRanged, Letterbox, LetterboxResized)}


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    # EnsureUnitRange(d) / Letterbox(Resized) subclass MONAI's bases, so they exist once MONAI is loaded.
    if name in ("EnsureUnitRange", "EnsureUnitRanged", "Letterbox", "LetterboxResized"):
        if not _CLASSES:
            _CLASSES.update(_transform_classes())
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=8)
def cxr_preprocess(size: int = DEFAULT_SIZE, channels: int = DEFAULT_CHANNELS, keys: tuple[str, ...] = ("image",)):
    """The chest X-ray preprocessing pipeline (see module docstring) as a ``monai.transforms.Compose`` of
    dictionary transforms; input ``{"image": (H, W)}``, output float32 numpy ``(channels, size, size)``
    under ``image`` and the ``LetterboxGeometry`` under ``geometry``."""
    mt = _monai()
    keys = tuple(keys)
    mean, std = normalisation_for(channels)
    steps = [
        __getattr__("EnsureUnitRanged")(keys),
        # Letterbox first, on the 2-D image: MONAI's transforms then only touch the small result.
        __getattr__("LetterboxResized")(keys, size=size),
        mt.EnsureChannelFirstd(keys, channel_dim="no_channel"),
    ]
    if channels == 3:
        steps.append(mt.RepeatChanneld(keys, repeats=3))
    steps += [
        mt.NormalizeIntensityd(
            keys,
            subtrahend=np.asarray(mean, np.float32),
            divisor=np.asarray(std, np.float32),
            channel_wise=True,
            dtype=np.float32,
        ),
        mt.EnsureTyped(keys, data_type="numpy", dtype=np.float32, track_meta=False),
    ]
    return mt.Compose(steps)


def _pixels(image: ImageRecord | np.ndarray) -> np.ndarray:
    pixels = image.pixels if isinstance(image, ImageRecord) else np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    return pixels


def preprocess_with_geometry(
    image: ImageRecord | np.ndarray, size: int = DEFAULT_SIZE, channels: int = DEFAULT_CHANNELS
) -> tuple[np.ndarray, LetterboxGeometry]:
    """An ImageRecord (or 2-D array in [0, 1]) → (network input (C, size, size), its geometry)."""
    out = cxr_preprocess(size, channels)({"image": _pixels(image)})
    return out["image"], out["geometry"]


def preprocess_image(
    image: ImageRecord | np.ndarray, size: int = DEFAULT_SIZE, channels: int = DEFAULT_CHANNELS
) -> np.ndarray:
    """An ImageRecord (or 2-D array in [0, 1]) → float32 network input (channels, size, size)."""
    return preprocess_with_geometry(image, size, channels)[0]

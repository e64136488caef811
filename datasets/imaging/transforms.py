"""Chest radiograph preprocessing shared by training and serving.

The pipeline, as MONAI-style dictionary transforms (callables on a dict, operating on the listed
keys, channel-first arrays), composable with ``monai.transforms.Compose`` or the small ``Compose``
here (which keeps this module free of torch/MONAI imports, so ingest can use it cheaply):

1. ``EnsureUnitRanged``: intensities in [0, 1] (readers already deliver that; hand-made arrays
   outside it are min-max scaled).
2. ``AsChannelFirstd``: (H, W) → (1, H, W).
3. ``LetterboxResized``: aspect-preserving resize so the longer side is ``size``, then symmetric
   zero (black) padding to ``size × size``. A squash would distort heart width (cardiomegaly is
   a ratio); black padding looks like collimation, which the network sees in real data anyway.
   The geometry (``LetterboxGeometry``) is stored under ``"geometry"`` so heatmaps can be mapped
   back onto the original image.
4. ``RepeatChanneld`` (only when ``channels == 3``).
5. ``NormalizeIntensityd``: ImageNet-style ``(x - mean) / std``. With one channel (the default) the
   mean and std are the averages of the ImageNet RGB values (0.449, 0.226); with three they are
   the usual per-channel values, so torchvision ImageNet weights could be fine-tuned unchanged.

Output: float32 ``(channels, size, size)``; default ``channels=1, size=224``. We chose one channel
because no pretrained weights are downloaded (no internet) and radiographs are grayscale: three
identical channels would triple the first convolution's input for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    def for_shape(cls, shape: Sequence[int], size: int = DEFAULT_SIZE) -> "LetterboxGeometry":
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
            out[index, top:top + rows, left:left + cols] = resize_2d(plane, self.resized_shape)
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
        crop = array.reshape((-1, self.size, self.size))[:, top:top + rows, left:left + cols]
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


# --- dictionary transforms -------------------------------------------------------------------


class MapTransform:
    """Base of the dictionary transforms: apply ``transform_array`` to each key in ``keys``."""

    def __init__(self, keys: Hashable | Iterable[Hashable] = "image", allow_missing_keys: bool = False) -> None:
        self.keys = (keys,) if isinstance(keys, str) or not isinstance(keys, Iterable) else tuple(keys)
        self.allow_missing_keys = allow_missing_keys

    def key_iterator(self, data: Mapping[Hashable, Any]) -> Iterable[Hashable]:
        for key in self.keys:
            if key in data:
                yield key
            elif not self.allow_missing_keys:
                raise KeyError(f"key {key!r} not in data (keys: {list(data)})")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.transform_array(np.asarray(out[key]), out)
        return out

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        raise NotImplementedError


class EnsureUnitRanged(MapTransform):
    """float32 in [0, 1]; arrays already in range are left alone (readers have windowed them)."""

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        if not np.all(np.isfinite(array)):
            array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return array
        if high <= low:
            return np.zeros_like(array)
        return ((array - low) / (high - low)).astype(np.float32)


class AsChannelFirstd(MapTransform):
    """(H, W) → (1, H, W); channel-first arrays pass through."""

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        if array.ndim == 2:
            return array[None]
        if array.ndim == 3:
            return array
        raise ValueError(f"expected (H, W) or (C, H, W), got shape {array.shape}")


class LetterboxResized(MapTransform):
    """Aspect-preserving resize + symmetric padding to ``size × size`` (channel-first input).

    The geometry of the first key is stored in ``data[geometry_key]``.
    """

    def __init__(self, keys: Hashable | Iterable[Hashable] = "image", size: int = DEFAULT_SIZE,
                 pad_value: float = 0.0, geometry_key: str = "geometry", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size = int(size)
        self.pad_value = float(pad_value)
        self.geometry_key = geometry_key

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        geometry = LetterboxGeometry.for_shape(array.shape, self.size)
        data.setdefault(self.geometry_key, geometry)
        return geometry.apply(array, self.pad_value)


class RepeatChanneld(MapTransform):
    """(1, H, W) → (channels, H, W) by repetition (for 3-channel networks)."""

    def __init__(self, keys: Hashable | Iterable[Hashable] = "image", channels: int = 3,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = int(channels)

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        if array.shape[0] == self.channels:
            return array
        if array.shape[0] != 1:
            raise ValueError(f"cannot repeat {array.shape[0]} channels to {self.channels}")
        return np.repeat(array, self.channels, axis=0)


class NormalizeIntensityd(MapTransform):
    """Per-channel ``(x - mean) / std``."""

    def __init__(self, keys: Hashable | Iterable[Hashable] = "image", mean: Sequence[float] = (IMAGENET_GRAY_MEAN,),
                 std: Sequence[float] = (IMAGENET_GRAY_STD,), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)

    def transform_array(self, array: np.ndarray, data: dict[Hashable, Any]) -> np.ndarray:
        if array.shape[0] != self.mean.shape[0]:
            raise ValueError(f"{array.shape[0]} channels but {self.mean.shape[0]} normalisation values")
        return ((array - self.mean) / self.std).astype(np.float32)


class Compose:
    """Apply transforms in order (same contract as ``monai.transforms.Compose`` for dicts)."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for transform in self.transforms:
            out = transform(out)
        return out


def cxr_preprocess(size: int = DEFAULT_SIZE, channels: int = DEFAULT_CHANNELS, keys: Sequence[str] = ("image",)) -> Compose:
    """The chest X-ray preprocessing pipeline (see module docstring); input ``{"image": (H, W)}``."""
    mean, std = normalisation_for(channels)
    steps: list[Callable[[dict], dict]] = [
        EnsureUnitRanged(keys),
        AsChannelFirstd(keys),
        LetterboxResized(keys, size=size),
    ]
    if channels == 3:
        steps.append(RepeatChanneld(keys, channels=3))
    steps.append(NormalizeIntensityd(keys, mean=mean, std=std))
    return Compose(steps)


def _pixels(image: ImageRecord | np.ndarray) -> np.ndarray:
    pixels = image.pixels if isinstance(image, ImageRecord) else np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    return pixels


def preprocess_with_geometry(image: ImageRecord | np.ndarray, size: int = DEFAULT_SIZE,
                             channels: int = DEFAULT_CHANNELS) -> tuple[np.ndarray, LetterboxGeometry]:
    """An ImageRecord (or 2-D array in [0, 1]) → (network input (C, size, size), its geometry)."""
    out = cxr_preprocess(size, channels)({"image": _pixels(image)})
    return out["image"], out["geometry"]


def preprocess_image(image: ImageRecord | np.ndarray, size: int = DEFAULT_SIZE,
                     channels: int = DEFAULT_CHANNELS) -> np.ndarray:
    """An ImageRecord (or 2-D array in [0, 1]) → float32 network input (channels, size, size)."""
    return preprocess_with_geometry(image, size, channels)[0]

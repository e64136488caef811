"""Heatmap over radiograph, as an RGB picture for the worklist and the secondary capture."""

from __future__ import annotations

import numpy as np

from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import heatmap_to_original, resize_2d

DEFAULT_COLORMAP = "turbo"  # perceptually smoother than jet, same reading (blue cold, red hot)


def render_overlay(image_record: ImageRecord | np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
                   colormap: str = DEFAULT_COLORMAP, max_side: int | None = None) -> np.ndarray:
    """Blend a heatmap over the windowed grayscale image.

    Args:
        image_record: the image as read (its pixels are already windowed to [0, 1]) or a 2-D array.
        heatmap: (rows, cols) in [0, 1] on the original image; a square map of another size is
            taken to be in network-input space and mapped back (padding removed).
        alpha: opacity at the hottest point. Opacity scales with the heat, so cold regions show
            the radiograph untouched instead of a blue wash over the whole chest.
        colormap: any matplotlib colormap name (``turbo``, ``jet`` ...).
        max_side: if given, the output is downscaled so its longer side is at most this.

    Returns:
        uint8 array (rows, cols, 3).
    """
    from matplotlib import colormaps

    base = image_record.pixels if isinstance(image_record, ImageRecord) else np.asarray(image_record, dtype=np.float32)
    if base.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {base.shape}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {heat.shape}")
    if heat.shape != base.shape:
        if heat.shape[0] == heat.shape[1]:
            heat = heatmap_to_original(heat, base.shape)
        else:
            heat = resize_2d(heat, base.shape)
    if max_side is not None and max(base.shape) > max_side:
        scale = max_side / max(base.shape)
        shape = (max(1, round(base.shape[0] * scale)), max(1, round(base.shape[1] * scale)))
        base, heat = resize_2d(base, shape), resize_2d(heat, shape)

    base = np.clip(np.nan_to_num(base), 0.0, 1.0)
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
    colours = colormaps[colormap](heat)[..., :3].astype(np.float32)
    weight = (float(np.clip(alpha, 0.0, 1.0)) * heat)[..., None]
    rgb = base[..., None] * (1.0 - weight) + colours * weight
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)

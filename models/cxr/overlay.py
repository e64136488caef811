"""Heatmap over radiograph, as an RGB picture for the worklist and the secondary capture."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.pixels import pack_bits

from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import heatmap_to_original, resize_2d
from models.read import HeatmapPixels

DEFAULT_COLORMAP = "turbo"  # perceptually smoother than jet, same reading (blue cold, red hot)


@lru_cache(maxsize=8)
def colormap_lut(colormap: str) -> np.ndarray:
    """The colormap's RGB entries as a (N, 3) float32 table (N = its resolution, 256 for turbo)."""
    from matplotlib import colormaps  # noqa: PLC0415 - matplotlib is heavy; loaded when an overlay is drawn

    cmap = colormaps[colormap]
    lut = cmap(np.arange(cmap.N))[:, :3].astype(np.float32)
    lut.setflags(write=False)
    return lut


def apply_colormap(values: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """RGB float32 for ``values`` in [0, 1]: the same colours as ``matplotlib.colormaps[colormap](values)``
    (which also picks entry ``int(value * N)``), by table lookup instead of matplotlib's float64 RGBA
    pass — that pass was most of a served chest X-ray read at full resolution."""
    lut = colormap_lut(colormap)
    n = len(lut)
    index = (values * n).astype(np.int32)
    np.minimum(index, n - 1, out=index)
    return np.take(lut, index, axis=0)


def render_overlay(
    image_record: ImageRecord | np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.45,
    colormap: str = DEFAULT_COLORMAP,
    max_side: int | None = None,
) -> np.ndarray:
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

    base = np.clip(np.nan_to_num(base), 0.0, 1.0, dtype=np.float32)[..., None]
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0, dtype=np.float32)
    # base + (colour - base) * weight, in place in float32: a convex combination of values in [0, 1],
    # so no clipping is needed before rounding. Half the time of the plain expression (a served
    # chest X-ray read renders one of these per positive finding).
    rgb = apply_colormap(heat, colormap)
    rgb -= base
    rgb *= (heat * np.float32(np.clip(alpha, 0.0, 1.0)))[..., None]
    rgb += base
    rgb *= np.float32(255.0)
    rgb += np.float32(0.5)
    return rgb.astype(np.uint8)


def overlay_for_source(
    image_record: ImageRecord | np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = DEFAULT_COLORMAP
) -> np.ndarray:
    """The overlay pixel-aligned with the source image: exactly its rows and columns (no banner, no
    resize), so a viewer can lay it over the original or flick between them without a shift."""
    base = image_record.pixels if isinstance(image_record, ImageRecord) else np.asarray(image_record)
    rgb = render_overlay(image_record, heatmap, alpha=alpha, colormap=colormap, max_side=None)
    if rgb.shape[:2] != base.shape:
        raise AssertionError(f"overlay {rgb.shape[:2]} does not match the source {base.shape}")
    return rgb


def label_bitmap(rows: int, columns: int, text: str) -> np.ndarray:
    """A (rows, columns) bool bitmap with ``text`` written along the top-left edge, for a DICOM Overlay
    Plane: the label travels as a separate object over the image (viewers draw and can hide it)
    instead of pixels burned into, or added above, the picture."""
    size = max(10, min(rows, columns) // 40)
    try:
        from matplotlib import get_data_path  # noqa: PLC0415 - heavy; only for its font file

        font = ImageFont.truetype(f"{get_data_path()}/fonts/ttf/DejaVuSans.ttf", size)
    except Exception:  # noqa: BLE001 - Pillow's own font is the fallback
        font = ImageFont.load_default(size=size)
    canvas = Image.new("1", (columns, rows), 0)
    ImageDraw.Draw(canvas).text((max(2, size // 3), max(2, size // 3)), text, font=font, fill=1)
    return np.asarray(canvas, dtype=bool)


def add_label_overlay(ds, text: str, group: int = 0x6000) -> None:
    """Add an Overlay Plane (group 60xx, type G) holding ``text`` to a pydicom Dataset of the same
    geometry (Rows × Columns); the description and label say what it is."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    bitmap = label_bitmap(rows, columns, text)
    ds.add_new((group, 0x0010), "US", rows)
    ds.add_new((group, 0x0011), "US", columns)
    ds.add_new((group, 0x0022), "LO", text[:64])  # Overlay Description
    ds.add_new((group, 0x0040), "CS", "G")  # Overlay Type: graphics
    ds.add_new((group, 0x0050), "SS", [1, 1])  # Overlay Origin (1-based)
    ds.add_new((group, 0x0100), "US", 1)  # Overlay Bits Allocated
    ds.add_new((group, 0x0102), "US", 0)  # Overlay Bit Position
    ds.add_new((group, 0x1500), "LO", "AI label")  # Overlay Label
    ds.add_new((group, 0x3000), "OW", pack_bits(bitmap.ravel()))


def render_deferred_heatmaps(read, image_record: ImageRecord | np.ndarray) -> None:
    """Fill ``read.pixels`` (models.read.PreRead) from its ``cam_maps``: each uint8 map in network-input
    space is put back on the image (letterbox undone, the image's own rows and columns) and blended over
    it — the same pictures the reader would have made itself, made where the image already is."""
    for code, cam in list(read.cam_maps.items()):
        heat = heatmap_to_original(
            np.asarray(cam, dtype=np.float32) / 255.0,
            np.shape(image_record.pixels if isinstance(image_record, ImageRecord) else image_record),
        )
        read.pixels[code] = HeatmapPixels(heat, overlay_for_source(image_record, heat))
    read.cam_maps = {}

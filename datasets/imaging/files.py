"""PNG/JPEG training images (NIH ChestX-ray14, CheXpert, exports) → ImageRecord.

These images were already windowed for display when they were exported, so they are scaled by
their bit depth, not re-windowed: an 8-bit value v becomes v / 255, exactly as the same value
stored in a DICOM with an identity window (see ``wrap_png_as_dicom``) does.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from datasets.imaging.dicom import luminance, to_unit_range
from datasets.imaging.errors import ImageInputError
from datasets.imaging.record import ImageRecord


def _open(path_or_bytes: str | Path | bytes) -> tuple[Image.Image, str]:
    try:
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(path_or_bytes)))
            name = "<bytes>"
        else:
            path = Path(path_or_bytes)
            if not path.is_file():
                raise ImageInputError("file", f"no such file: {path}")
            image = Image.open(path)
            name = str(path)
        image.load()
    except ImageInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageInputError("file", f"not a readable PNG/JPEG image ({exc})") from exc
    # Phone and scanner JPEGs may carry the rotation in EXIF only; apply it so "up" is up.
    return ImageOps.exif_transpose(image), name


def gray_integers(path_or_bytes: str | Path | bytes) -> tuple[np.ndarray, int, str]:
    """The image as grayscale integer samples, with their significant bit depth and the source mode.

    Handles L, LA (gray + alpha, as some NIH exports are), I;16 / I (16-bit), RGB, RGBA, P and 1.
    Alpha is dropped, not composited: radiographs are opaque and alpha there is an export artefact.
    """
    image, _ = _open(path_or_bytes)
    mode = image.mode
    if mode in ("L", "LA"):
        array = np.asarray(image.getchannel(0), dtype=np.uint8)
        return array, 8, mode
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8), 8, mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image)
        if mode == "F" or array.dtype.kind == "f":
            raise ImageInputError("file", "floating-point images are not supported; export 8- or 16-bit integers")
        if array.min() < 0 or array.max() > 65535:
            raise ImageInputError("file", f"{mode} image has values outside 0..65535")
        array = array.astype(np.uint16)
        # 12-bit data in a 16-bit container is common; scale by the bits actually used (at least
        # 8), so such an image is not shown almost black.
        bits = max(8, int(np.ceil(np.log2(float(array.max()) + 1.0)))) if array.size else 16
        return array, min(bits, 16), mode
    if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        gray = np.rint(luminance(rgb)).clip(0, 255).astype(np.uint8)
        return gray, 8, mode
    raise ImageInputError("file", f"image mode {mode} is not supported")


def read_image_file(path_or_bytes: str | Path | bytes) -> ImageRecord:
    """Read a PNG/JPEG (8- or 16-bit, gray, gray+alpha, RGB, RGBA, palette) into an ImageRecord."""
    array, bits, mode = gray_integers(path_or_bytes)
    if array.ndim != 2 or min(array.shape) < 2:
        raise ImageInputError("file", f"image of shape {array.shape} is not a 2-D picture")
    pixels = to_unit_range(array, 0, 2**bits - 1)
    source = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else str(path_or_bytes)
    return ImageRecord(
        pixels=pixels,
        spacing_mm=None,
        photometric="MONOCHROME2" if mode in ("L", "LA", "1") or mode.startswith("I") else "RGB",
        bits_stored=bits,
        meta={"format": "image", "source": source, "mode": mode, "window_source": "full_range"},
    )

"""Radiographs: DICOM and PNG/JPEG readers, the preprocessing shared by training and serving,
synthetic chest phantoms, and PNG → DICOM wrapping for demos.

Light on imports on purpose (numpy, pydicom, Pillow; no torch/MONAI) so ingest can read and
check images without loading a network stack.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from datasets.imaging.dicom import load_dataset, pixel_spacing_mm, read_dicom_image, to_unit_range
from datasets.imaging.errors import ImageInputError
from datasets.imaging.files import read_image_file
from datasets.imaging.phantoms import (
    PHANTOM_FINDINGS,
    ChestPhantom,
    chest_phantom,
    phantom_dataset,
    random_chest_phantom,
)
from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import (
    DEFAULT_CHANNELS,
    DEFAULT_SIZE,
    LetterboxGeometry,
    cxr_preprocess,
    heatmap_to_original,
    normalisation_for,
    preprocess_image,
    preprocess_with_geometry,
)
from datasets.imaging.wrap import (
    DX_IMAGE_STORAGE_FOR_PRESENTATION,
    NIH_PIXEL_SPACING_MM,
    nih_patient_id,
    wrap_array_as_dicom,
    wrap_png_as_dicom,
)


def is_dicom_bytes(data: bytes) -> bool:
    """True if ``data`` starts like a DICOM Part 10 file (128-byte preamble + ``DICM``)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def read_image(source: bytes | str | Path | Dataset) -> ImageRecord:
    """Any supported image: a Dataset or DICOM file/bytes → ``read_dicom_image``, else PNG/JPEG."""
    if isinstance(source, Dataset):
        return read_dicom_image(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageInputError("file", f"no such file: {path}")
        with path.open("rb") as handle:
            data = handle.read(132)
        if is_dicom_bytes(data) or path.suffix.lower() in (".dcm", ".dicom"):
            return read_dicom_image(path)
        return read_image_file(path)
    return read_dicom_image(data) if is_dicom_bytes(data) else read_image_file(data)


__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_SIZE",
    "DX_IMAGE_STORAGE_FOR_PRESENTATION",
    "NIH_PIXEL_SPACING_MM",
    "PHANTOM_FINDINGS",
    "ChestPhantom",
    "ImageInputError",
    "ImageRecord",
    "LetterboxGeometry",
    "chest_phantom",
    "cxr_preprocess",
    "heatmap_to_original",
    "is_dicom_bytes",
    "load_dataset",
    "nih_patient_id",
    "normalisation_for",
    "phantom_dataset",
    "pixel_spacing_mm",
    "preprocess_image",
    "preprocess_with_geometry",
    "random_chest_phantom",
    "read_dicom_image",
    "read_image",
    "read_image_file",
    "to_unit_range",
    "wrap_array_as_dicom",
    "wrap_png_as_dicom",
]

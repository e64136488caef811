"""The in-memory form every image reader produces and every image consumer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageRecord:
    """A 2-D image after reading, ready to be shown or preprocessed.

    Attributes:
        pixels: float32 array (rows, columns) in [0, 1], in display orientation: the modality
            LUT, VOI LUT / window and MONOCHROME1 inversion are already applied, so higher is
            always brighter. Colour sources are reduced to luminance.
        spacing_mm: physical size of one pixel (row spacing, column spacing) in mm, or None when
            the source does not say (PNG/JPEG) or says 0.
        photometric: the source's Photometric Interpretation as received (``MONOCHROME1``,
            ``MONOCHROME2``, ``RGB``, ``YBR_FULL_422``, ``PALETTE COLOR``...); the pixels are
            already converted, this only records what the sender sent.
        modality, body_part, view_position: DICOM Modality, Body Part Examined, View Position.
        sop_class_uid, study_instance_uid, series_instance_uid, sop_instance_uid: source UIDs.
        patient: free patient fields (id, name, birth_date, sex, age) as received.
        bits_stored: significant bits per sample in the source (8 for an 8-bit PNG).
        meta: how the pixels were obtained: source format, transfer syntax, frame index and
            frame count, the window used and where it came from (``header``, ``voi_lut``,
            ``percentile``, ``full_range``).
        site: the sending site (a worklist site id) when known: a reader picks that site's own
            operating points by it.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    photometric: str = "MONOCHROME2"
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    patient: dict[str, Any] = field(default_factory=dict)
    bits_stored: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    site: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

"""The heatmap picture as a DICOM Secondary Capture, so any PACS viewer can show it.

RGB, same study and patient as the source, a new series, derived-image attributes pointing at the
source image, Burned In Annotation YES: a banner "AI heatmap – preliminary, not for diagnosis" is
drawn into the pixels (above the image, so it never hides anatomy), because a PACS may drop or
hide header text but never pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from serving.results import codes
from serving.results.sr import DEFAULT_MANUFACTURER, model_identity_fields

HEATMAP_LABEL = "AI heatmap \u2013 preliminary, not for diagnosis"
DEFAULT_SC_SERIES_NUMBER = 901


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # DejaVu Sans ships with matplotlib (a project dependency) and has the en dash and most
    # scripts; Pillow's built-in font is the fallback.
    try:
        import matplotlib  # noqa: PLC0415 - for its font file only, when a banner is drawn

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:
        return ImageFont.load_default(size=size)


def add_banner(rgb: np.ndarray, text: str = HEATMAP_LABEL) -> np.ndarray:
    """A black band with ``text`` in white added above the image (uint8 RGB in, uint8 RGB out)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB (rows, cols, 3), got {rgb.dtype} {rgb.shape}")
    rows, cols = rgb.shape[:2]
    font_size = max(10, min(rows, cols) // 32)
    font = _font(font_size)
    canvas = Image.new("RGB", (cols, rows), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    # Shrink the font until the text fits the width.
    while font_size > 8 and draw.textlength(text, font=font) > cols - 8:
        font_size -= 1
        font = _font(font_size)
    band = int(font_size * 1.8)
    banner = Image.new("RGB", (cols, band), (0, 0, 0))
    ImageDraw.Draw(banner).text((4, (band - font_size) // 2), text, font=font, fill=(255, 255, 255))
    return np.concatenate([np.asarray(banner, dtype=np.uint8), rgb], axis=0)


def _source_reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue = codes.SOURCE_IMAGE_FOR_PROCESSING.value
    purpose.CodingSchemeDesignator = codes.SOURCE_IMAGE_FOR_PROCESSING.scheme_designator
    purpose.CodeMeaning = codes.SOURCE_IMAGE_FOR_PROCESSING.meaning
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def build_heatmap_sc(
    source_dataset: Dataset,
    overlay_rgb: np.ndarray,
    model: dict[str, Any],
    series_number: int = DEFAULT_SC_SERIES_NUMBER,
    instance_number: int = 1,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    label: str = HEATMAP_LABEL,
    finding: str | None = None,
    draw_label: bool = True,
) -> Dataset:
    """Secondary Capture of ``overlay_rgb`` (uint8 (rows, cols, 3), e.g. from ``render_overlay``).

    Args:
        source_dataset: the image the heatmap explains (pixel data not needed).
        overlay_rgb: the picture.
        model: ``name``, ``version``, ``manufacturer``, ``demo`` as for ``build_ai_sr``.
        series_number, instance_number: of the new object.
        label: banner text (burned in) and Image Comments.
        finding: what the map explains (e.g. ``"Pneumonia 0.83"``), appended to the banner.
        draw_label: draw the banner (Burned In Annotation is YES only if so).
    """
    name, version, manufacturer, demo = model_identity_fields(model)
    rgb = np.asarray(overlay_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"overlay must be (rows, cols, 3) RGB, got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"overlay must be uint8, got {rgb.dtype}")
    text = label + (f" | {finding}" if finding else "") + (" | DEMO model" if demo else "")
    pixels = add_banner(rgb, text) if draw_label else rgb

    orientation = source_dataset.get("PatientOrientation")
    orientation = tuple(orientation) if orientation and len(orientation) == 2 else ("L", "F")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source_dataset,
        pixel_array=np.ascontiguousarray(pixels),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer=manufacturer or DEFAULT_MANUFACTURER,
        patient_orientation=orientation,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    sc.SpecificCharacterSet = "ISO_IR 192"  # the label has an en dash; all text is UTF-8 here
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES" if draw_label else "NO"
    sc.LossyImageCompression = "00"
    sc.ConversionType = "WSD"  # made on a workstation (the service), not captured from a video interface
    sc.DerivationDescription = f"Grad-CAM heatmap by {name} v{version} over the source image"
    sc.SourceImageSequence = [_source_reference(source_dataset)]
    sc.SeriesDescription = f"AI heatmap {name} v{version} - preliminary, not for diagnosis"
    sc.ImageComments = text
    if "Modality" in source_dataset and "BodyPartExamined" in source_dataset:
        sc.BodyPartExamined = source_dataset.BodyPartExamined
    return sc

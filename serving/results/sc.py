"""The heatmap picture as a DICOM Secondary Capture, so any PACS viewer can show it.

RGB, same study and patient as the source, a new series, derived-image attributes pointing at the
source image. The picture has the source's rows and columns (pixel-aligned: a viewer can lay it
over the original); the label "AI heatmap – preliminary, not for diagnosis" travels as a DICOM
Overlay Plane over it (a separate object viewers draw by default and can hide) and in the Image
Comments / Series Description, not burned into or added above the pixels.
"""

from __future__ import annotations

from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from models.cxr.overlay import add_label_overlay
from serving.results import codes
from serving.results.sr import DEFAULT_MANUFACTURER, model_identity_fields

HEATMAP_LABEL = "AI heatmap \u2013 preliminary, not for diagnosis"
DEFAULT_SC_SERIES_NUMBER = 901


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
        label: label text (the Overlay Plane) and Image Comments.
        finding: what the map explains (e.g. ``"Pneumonia 0.83"``), appended to the label.
        draw_label: add the label as an Overlay Plane.
    """
    name, version, manufacturer, demo = model_identity_fields(model)
    rgb = np.asarray(overlay_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"overlay must be (rows, cols, 3) RGB, got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"overlay must be uint8, got {rgb.dtype}")
    text = label + (f" | {finding}" if finding else "") + (" | DEMO model" if demo else "")
    # Same rows and columns as the source (pixel-aligned); the label is an Overlay Plane over it
    # (models.cxr.overlay.add_label_overlay), not a band added above the picture.
    orientation = source_dataset.get("PatientOrientation")
    orientation = tuple(orientation) if orientation and len(orientation) == 2 else ("L", "F")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source_dataset,
        pixel_array=np.ascontiguousarray(rgb),
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
    _describe_derived(sc, source_dataset, text if draw_label else None, name, version)
    sc.ImageComments = text
    return sc


def _describe_derived(sc: Dataset, source: Dataset, label: str | None, name: str, version: str) -> None:
    """What the picture is and where it came from: a derived secondary image of ``source`` (with the
    label as an Overlay Plane when given), no burned-in text, lossless, made by the service."""
    sc.SpecificCharacterSet = "ISO_IR 192"  # the label has an en dash; all text is UTF-8 here
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "NO"
    if label is not None:
        add_label_overlay(sc, label)
    sc.LossyImageCompression = "00"
    sc.ConversionType = "WSD"  # made on a workstation (the service), not captured from a video interface
    sc.DerivationDescription = f"Grad-CAM heatmap by {name} v{version} over the source image"
    sc.SourceImageSequence = [_source_reference(source)]
    sc.SeriesDescription = f"AI heatmap {name} v{version} - preliminary, not for diagnosis"
    if "Modality" in source and "BodyPartExamined" in source:
        sc.BodyPartExamined = source.BodyPartExamined

"""Chest X-ray models: the label set, DenseNet classifiers, Grad-CAM and heatmap overlays.

Preprocessing lives in ``datasets.imaging`` (shared with training); this package holds what
depends on the network.
"""

from datasets.vocabulary.cxr_labels import (
    ANY_ABNORMALITY,
    CXR_LABEL_CODES,
    CXR_LABEL_NAMES,
    CXR_LABELS,
    NUM_CXR_LABELS,
    PRIVATE_SCHEME,
    Coding,
    CxrLabel,
    codes_from_nih,
    label_by_code,
    label_index,
    multi_hot,
)
from models.cxr.network import (
    CXR_ARCHITECTURES,
    build_cxr_model,
    cam_target_layer,
    default_device,
    guess_cam_target_layer,
    predict_probabilities,
)

__all__ = [
    "ANY_ABNORMALITY",
    "CXR_ARCHITECTURES",
    "CXR_LABELS",
    "CXR_LABEL_CODES",
    "CXR_LABEL_NAMES",
    "NUM_CXR_LABELS",
    "PRIVATE_SCHEME",
    "Coding",
    "CxrLabel",
    "build_cxr_model",
    "cam_target_layer",
    "codes_from_nih",
    "default_device",
    "gradcam_heatmaps",
    "guess_cam_target_layer",
    "heatmap_to_original",
    "label_by_code",
    "label_index",
    "multi_hot",
    "predict_probabilities",
    "record_heatmaps",
    "render_overlay",
]


def __getattr__(name: str):
    # Grad-CAM pulls in MONAI's visualize stack and the overlay matplotlib; load them on first use
    # so importing the label set stays cheap (the SR builder only needs labels).
    if name in ("gradcam_heatmaps", "heatmap_to_original", "record_heatmaps"):
        from models.cxr import gradcam  # noqa: PLC0415 - MONAI and torch load on first use (PEP 562)

        return getattr(gradcam, name)
    if name == "render_overlay":
        from models.cxr.overlay import render_overlay  # noqa: PLC0415 - matplotlib loads on first use (PEP 562)

        return render_overlay
    raise AttributeError(f"module 'models.cxr' has no attribute {name!r}")

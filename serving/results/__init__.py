"""AI results as DICOM: the TID 1500 SR and the heatmap Secondary Capture.

Pure functions (highdicom/pydicom/numpy/Pillow): no Ray, no I/O, so they are tested without a
running service and reused by scripts.
"""

from serving.results.sc import HEATMAP_LABEL, build_heatmap_sc
from serving.results.sr import (
    build_ai_sr,
    device_uid,
    findings_from_sr,
    model_from_sr,
    triage_from_sr,
)

__all__ = [
    "HEATMAP_LABEL",
    "build_ai_sr",
    "build_heatmap_sc",
    "device_uid",
    "findings_from_sr",
    "model_from_sr",
    "triage_from_sr",
]

"""DICOM SOP classes the service stores: one table per kind, a docstring per member (PS3.4 Annex B
and PS3.6 Annex A names). The SCP accepts every one of them; ingest routes ECG waveforms to the ECG
reader; the results the service writes are the SR and Secondary Capture classes."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from pydicom.uid import UID


class EcgSopClass(StrEnum):
    """Waveform storage classes read as a 12-lead ECG."""

    TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
    """12-lead ECG Waveform Storage."""
    GENERAL_ECG = "1.2.840.10008.5.1.4.1.1.9.1.2"
    """General ECG Waveform Storage."""
    AMBULATORY_ECG = "1.2.840.10008.5.1.4.1.1.9.1.3"
    """Ambulatory ECG Waveform Storage."""


class ImageSopClass(StrEnum):
    """Image storage classes the SCP accepts (routing decides which a model reads)."""

    CR = "1.2.840.10008.5.1.4.1.1.1"
    """CR Image Storage."""
    DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
    """Digital X-Ray Image Storage - For Presentation."""
    DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
    """Digital X-Ray Image Storage - For Processing."""
    CT = "1.2.840.10008.5.1.4.1.1.2"
    """CT Image Storage."""
    ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
    """Enhanced CT Image Storage."""
    MR = "1.2.840.10008.5.1.4.1.1.4"
    """MR Image Storage."""
    ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
    """Enhanced MR Image Storage."""
    US = "1.2.840.10008.5.1.4.1.1.6.1"
    """Ultrasound Image Storage."""
    US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
    """Ultrasound Multi-frame Image Storage."""
    SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
    """Secondary Capture Image Storage (also what the heatmap is written as)."""
    SC_MULTIFRAME_SINGLE_BIT = "1.2.840.10008.5.1.4.1.1.7.1"
    """Multi-frame Single Bit Secondary Capture Image Storage."""
    SC_MULTIFRAME_GRAYSCALE_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
    """Multi-frame Grayscale Byte Secondary Capture Image Storage."""
    SC_MULTIFRAME_GRAYSCALE_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
    """Multi-frame Grayscale Word Secondary Capture Image Storage."""
    SC_MULTIFRAME_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"
    """Multi-frame True Color Secondary Capture Image Storage."""


class ResultSopClass(StrEnum):
    """Structured reports (the AI read is written as a TID 1500 Comprehensive 3D SR)."""

    COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
    """Comprehensive SR Storage."""
    COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
    """Comprehensive 3D SR Storage."""


STORAGE_SOP_CLASSES: MappingProxyType[str, str] = MappingProxyType(
    {member.value: UID(member.value).name for kind in (ImageSopClass, EcgSopClass, ResultSopClass) for member in kind}
)
"""Every storage SOP class the service accepts: UID → its PS3.6 name."""

ECG_SOP_CLASSES: MappingProxyType[str, str] = MappingProxyType({m.value: UID(m.value).name for m in EcgSopClass})
"""The ECG waveform classes: UID → name."""

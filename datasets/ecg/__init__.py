"""12-lead ECG: readers (DICOM waveform, WFDB, JSON), validation, transforms, measurements."""

from datasets.ecg.record import STANDARD_LEADS, EcgRecord

__all__ = ["STANDARD_LEADS", "EcgRecord"]

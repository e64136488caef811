"""The one error type image readers raise, so callers can answer a sender precisely."""

from __future__ import annotations


class ImageInputError(ValueError):
    """An image that cannot be read or shown as a radiograph.

    ``field`` names what is wrong (a DICOM keyword such as ``"PixelData"`` or
    ``"PhotometricInterpretation"``, or ``"file"`` for the container itself) and ``reason`` says
    why, in words a sender or an operator can act on. Ingest stores the object anyway and lists
    the reason; it is never silently dropped.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

"""The one reader interface every ECG format implements (as ``monai.data.ImageReader`` does for images).

A reader says whether it handles an upload — by its bytes (``sniff``), its content type and its file
name (``verify_suffix``) — and ``read`` turns the file into an :class:`~datasets.ecg.record.EcgRecord`
with signals in millivolts, one row per lead, lead names spelt as in ``STANDARD_LEADS`` and
``meta["format"]`` set to the reader's ``name``. Anything that cannot be read raises
:class:`~datasets.ecg.errors.EcgInputError` naming the offending field. A reader refuses a header
whose sampling rate is missing, zero or negative, and a recording longer than a resting ECG may be,
before it decodes the samples where the format allows (``datasets.ecg.validate.check_sampling_rate``
/ ``check_duration``). Whether the record is a usable 12-lead ECG (all leads, amplitudes, flat leads)
is :func:`datasets.ecg.validate.validate_record`'s job, the same for every format.
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from datasets.ecg.errors import EcgInputError
from datasets.ecg.record import EcgRecord

__all__ = ["EcgReader", "EcgSource", "source_bytes", "xml_root_name"]

EcgSource = bytes | bytearray | memoryview | str | Path

SNIFF_BYTES = 4096  # how much of the head of a file the XML sniffers look at


class EcgReader(ABC):
    """One ECG file format. Subclasses set the class attributes and implement ``sniff`` and ``read``."""

    #: short stable id, also ``meta["format"]`` of what it reads ("dicom", "wfdb", "philips" ...)
    name: ClassVar[str]
    #: what a person calls the format, for error messages and docs
    description: ClassVar[str]
    #: file name endings it is known by (lower case, with the dot)
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: MIME types (without parameters) a sender may label it with
    content_types: ClassVar[tuple[str, ...]] = ()

    def verify_suffix(self, filename: str | None) -> bool:
        """Whether ``filename`` ends as files of this format do (MONAI's ImageReader.verify_suffix)."""
        return bool(filename) and Path(str(filename)).suffix.lower() in self.suffixes

    def accepts_content_type(self, content_type: str | None) -> bool:
        ctype = (content_type or "").split(";")[0].strip().lower()
        return bool(ctype) and ctype in self.content_types

    @abstractmethod
    def sniff(self, head: bytes) -> bool:
        """Whether the first bytes of a file (up to ``SNIFF_BYTES``) show it is this format."""

    @abstractmethod
    def read(self, source: Any) -> EcgRecord:
        """Read one ECG (bytes or a path; some readers take more, see their docstring)."""


def source_bytes(source: Any, reader: str) -> bytes:
    """The bytes of an upload or of a file path; EcgInputError("file") when the path cannot be read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise EcgInputError("file", f"cannot open {source}: {exc.strerror or exc}") from None
    if isinstance(source, io.IOBase):
        return source.read()
    raise TypeError(f"the {reader} reader takes bytes or a path, not {type(source).__name__}")


_XML_ROOT = re.compile(rb"<(?![?!])(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


def xml_root_name(head: bytes) -> str | None:
    """The local name of the first element of an XML document's head (None if it is not XML-like).

    Skips the declaration, comments and a BOM; a UTF-16 document is decoded first."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = head.decode("utf-16").encode("utf-8", "replace")
        except UnicodeDecodeError:
            return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"<"):
        return None
    text = re.sub(rb"<!--.*?-->", b"", text, flags=re.DOTALL)
    match = _XML_ROOT.search(text)
    return match.group(1).decode("ascii", "replace") if match else None

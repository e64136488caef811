"""SCP-ECG (EN 1064 / ISO 11073-91064): the binary format of many European and Asian carts.

Decoded by ecgdatakit's ``SCPECGParser`` (sections 0–11: header tags, lead definitions, Huffman /
difference-coded rhythm data with or without reference-beat subtraction, global measurements in
section 7, interpretive statements in sections 8 and 11). The cart's measurements and statements
become the record's :class:`~datasets.ecg.record.MachineInterpretation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgdatakit.parsing.parsers.scp_ecg import SCPECGParser

from datasets.ecg.readers.base import EcgReader, source_bytes
from datasets.ecg.readers.vendor import parse_with, to_ecg_record
from datasets.ecg.record import EcgRecord

__all__ = ["ScpEcgReader"]


class ScpEcgReader(EcgReader):
    """SCP-ECG record (``.scp``): CRC, record length, then section 0 (the pointer section)."""

    name = "scp_ecg"
    description = "SCP-ECG"
    suffixes = (".scp",)
    content_types = ("application/scp-ecg", "application/x-scp-ecg")

    def sniff(self, head: bytes) -> bool:
        # Bytes 0-1 CRC, 2-5 record length, then section 0 (the pointer section) whose first pointer
        # points at itself: the library's own check of that layout.
        return SCPECGParser.can_parse(Path("upload.scp"), head)

    def read(self, source: Any) -> EcgRecord:
        data = source_bytes(source, self.name)
        return to_ecg_record(parse_with(SCPECGParser, data, ".scp", self.description), self.name, self.description)

"""HL7 v3 annotated ECG (aECG, ``<AnnotatedECG xmlns="urn:hl7-org:v3">``), the FDA's submission format
and what several carts and ECG management systems export.

Decoded by ecgdatakit's ``HL7aECGParser``: the rhythm ``<series>``'s sequence set, a
``TIME_ABSOLUTE`` / ``TIME_RELATIVE`` sequence (``GLIST_TS``/``GLIST_PQ`` with the sample increment)
and one ``SLIST_PQ`` per lead (``MDC_ECG_LEAD_*``, origin + scale in uV or mV, digits). Global
measurements and interpretation statements carried as annotations become the record's
:class:`~datasets.ecg.record.MachineInterpretation`.
"""

from __future__ import annotations

from typing import Any

from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

from datasets.ecg.readers.base import EcgReader, source_bytes, xml_root_name
from datasets.ecg.readers.vendor import parse_with, to_ecg_record
from datasets.ecg.record import EcgRecord

__all__ = ["Hl7AecgReader"]


class Hl7AecgReader(EcgReader):
    """HL7 aECG XML (root element ``<AnnotatedECG>``)."""

    name = "hl7_aecg"
    description = "HL7 aECG"
    suffixes = (".xml",)
    content_types = ("application/xml", "text/xml", "application/hl7-v3+xml")

    def sniff(self, head: bytes) -> bool:
        return xml_root_name(head) == "AnnotatedECG"

    def read(self, source: Any) -> EcgRecord:
        data = source_bytes(source, self.name)
        return to_ecg_record(parse_with(HL7aECGParser, data, ".xml", self.description), self.name, self.description)

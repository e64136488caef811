"""ECG readers: one class per format behind one interface (:class:`EcgReader`), all giving an EcgRecord.

=================  ===========================  ===============================================
reader ``name``    format                       notes
=================  ===========================  ===============================================
``dicom``          DICOM ECG waveform           12-lead / General / Ambulatory ECG Waveform Storage
``wfdb``           WFDB record (zip or path)    PhysioNet / CinC 2021 layout; CinC ``# Dx:`` labels
``json``           the API's JSON form          ``{"sampling_rate", "leads", "units", "patient", "site"}``
``philips``        Philips Sierra XML           XLI-compressed; cart measurements + statements
``ge_muse``        GE MUSE XML                  cart measurements + statements
``ge_cardiosoft``  GE CardioSoft XML            cart measurements + statements
``hl7_aecg``       HL7 aECG                     annotations as cart measurements
``scp_ecg``        SCP-ECG (EN 1064)            sections 7/8/11 as cart measurements + statements
=================  ===========================  ===============================================

``read_ecg(body, content_type, filename)`` is the entry point for uploads: the bytes decide first
(each reader's ``sniff``: DICOM preamble, zip magic, a JSON object, an XML root element, the SCP-ECG
pointer section), then the content type, then the file name's suffix. ``reader_for`` gives the
reader without reading. Every failure is an :class:`~datasets.ecg.errors.EcgInputError`.
"""

from __future__ import annotations

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import normalize_lead_name
from datasets.ecg.readers.base import SNIFF_BYTES, EcgReader, xml_root_name
from datasets.ecg.readers.dicom import ECG_SOP_CLASSES, DicomWaveformReader, read_dicom_waveform
from datasets.ecg.readers.ge import GeCardioSoftReader, GeMuseReader
from datasets.ecg.readers.hl7aecg import Hl7AecgReader
from datasets.ecg.readers.json_form import JsonReader, read_json
from datasets.ecg.readers.philips import PhilipsSierraReader
from datasets.ecg.readers.scp import ScpEcgReader
from datasets.ecg.readers.wfdb_record import WfdbReader, parse_cinc_comments, read_wfdb
from datasets.ecg.record import EcgRecord

__all__ = [
    "ECG_SOP_CLASSES",
    "READERS",
    "DicomWaveformReader",
    "EcgReader",
    "GeCardioSoftReader",
    "GeMuseReader",
    "Hl7AecgReader",
    "JsonReader",
    "PhilipsSierraReader",
    "ScpEcgReader",
    "WfdbReader",
    "normalize_lead_name",
    "parse_cinc_comments",
    "read_dicom_waveform",
    "read_ecg",
    "read_json",
    "read_wfdb",
    "reader_for",
]

# In sniffing order: formats with a magic number first, then XML by root element.
READERS: tuple[EcgReader, ...] = (
    DicomWaveformReader(),
    WfdbReader(),
    ScpEcgReader(),
    JsonReader(),
    PhilipsSierraReader(),
    GeMuseReader(),
    GeCardioSoftReader(),
    Hl7AecgReader(),
)
_XML_READERS = tuple(r for r in READERS if ".xml" in r.suffixes)
_KNOWN = "a DICOM ECG waveform, a WFDB zip, JSON, Philips Sierra XML, GE MUSE or CardioSoft XML, HL7 aECG or SCP-ECG"


def reader_for(body: bytes, content_type: str | None = None, filename: str | None = None) -> EcgReader:
    """The reader for an upload: by its bytes, else its content type, else its file name.

    An XML file whose root element no reader knows is refused here, naming the root element, rather
    than being handed to a reader that would fail less clearly."""
    head = bytes(body[:SNIFF_BYTES])
    for reader in READERS:
        if reader.sniff(head):
            return reader
    root = xml_root_name(head)
    if root is not None:
        raise EcgInputError(
            "file",
            f"an XML document with root element <{root}>, which is not an ECG format read here (expected {_KNOWN})",
        )
    for reader in READERS:
        if reader not in _XML_READERS and reader.accepts_content_type(content_type):
            return reader
    for reader in READERS:
        if reader not in _XML_READERS and reader.verify_suffix(filename):
            return reader
    raise EcgInputError("file", f"not {_KNOWN}")


def read_ecg(body: bytes, content_type: str | None = None, filename: str | None = None) -> EcgRecord:
    """Read an uploaded ECG of any supported format (see the table above).

    Raises:
        EcgInputError: field "file" when nothing matches ("not a DICOM ECG waveform, ..."), or the
            reader's own error.
    """
    data = bytes(body or b"")
    if not data:
        raise EcgInputError("file", "the upload is empty")
    return reader_for(data, content_type, filename).read(data)

"""Philips Sierra ECG XML (PageWriter, TraceMasterVue; format versions 1.03, 1.04, 1.04.01).

The waveforms are XLI-compressed (LZW + delta coding); ecgdatakit's ``SierraXMLParser`` decodes them
(the same algorithm as the ``sierraecg`` package). The cart's global measurements and interpretive
statements come with the record as its :class:`~datasets.ecg.record.MachineInterpretation`; the
P-wave duration, which ecgdatakit does not map, is read from ``<globalmeasurements><pdur>`` here.

PageWriter strips end with the cart's 1 mV calibration pulse (after ~10.6 s of the 11 s channel, the
same on every lead, with zeros around it). It is not ECG: left in, it reads as a 1 mV step in every
lead at once. The reader drops that trailing run and says how many samples it dropped
(``meta["calibration_samples_dropped"]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from defusedxml import ElementTree
from ecgdatakit.parsing.parsers.sierra_xml import SierraXMLParser

from datasets.ecg.leads import parse_number
from datasets.ecg.readers.base import EcgReader, source_bytes, xml_root_name
from datasets.ecg.readers.vendor import parse_with, to_ecg_record
from datasets.ecg.record import EcgRecord
from datasets.vocabulary.ecg_measurements import EcgMeasurement

__all__ = ["PhilipsSierraReader"]


def _global_p_duration(data: bytes, pr_interval_ms: float | None) -> dict[str, float]:
    """``pdur`` of ``<globalmeasurements>`` (ms), if the file has it and it can be a P duration: some
    PageWriter files hold values longer than their own PR interval there (508 ms beside a PR of 144
    in one of the samples), which a P wave that ends before the QRS cannot have, so those are left out."""
    try:
        root = ElementTree.fromstring(data)
    except Exception:  # noqa: BLE001 - the parser already read the file; a missing extra is no error
        return {}
    for element in root.iter():
        if str(element.tag).rsplit("}", 1)[-1] == "globalmeasurements":
            for child in element:
                value = parse_number(child.text) if str(child.tag).rsplit("}", 1)[-1] == "pdur" else None
                if value is not None and 0 < value and (pr_interval_ms is None or value < pr_interval_ms):
                    return {EcgMeasurement.P_DURATION.value: float(value)}
    return {}


def _drop_calibration_tail(record: EcgRecord) -> EcgRecord:
    """Cut the trailing run of samples where every lead holds the same value (pulse and zeros)."""
    signals = record.signals
    differing = np.flatnonzero(~np.all(signals == signals[:1], axis=0))
    end = int(differing[-1]) + 1 if differing.size else 0
    if 0 < end < signals.shape[1]:
        record.meta["calibration_samples_dropped"] = int(signals.shape[1] - end)
        record.signals = np.ascontiguousarray(signals[:, :end])
    return record


class PhilipsSierraReader(EcgReader):
    """Philips Sierra ECG XML (root element ``<restingecgdata>``; UTF-8 or UTF-16)."""

    name = "philips"
    description = "Philips Sierra ECG XML"
    suffixes = (".xml",)
    content_types = ("application/xml", "text/xml")

    def sniff(self, head: bytes) -> bool:
        return xml_root_name(head) == "restingecgdata"

    def read(self, source: Any) -> EcgRecord:
        data = source_bytes(source, self.name)
        kit = parse_with(SierraXMLParser, data, ".xml", self.description)
        pr_interval = kit.measurements.pr_interval
        record = to_ecg_record(
            kit,
            self.name,
            self.description,
            extra_measurements=_global_p_duration(data, float(pr_interval) if pr_interval else None),
        )
        return _drop_calibration_tail(record)

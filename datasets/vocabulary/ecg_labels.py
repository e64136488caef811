"""The ECG label set the networks predict, with the SNOMED CT codes that map onto each label.

Codes follow the PhysioNet/CinC Challenge 2020–2021 label tables (SNOMED CT ids on the ``# Dx:``
header line). A record can carry several labels (multi-label).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EcgLabel:
    code: str  # short stable id used in APIs, model outputs and configs
    name: str  # what a doctor reads
    snomed: tuple[str, ...]


ECG_LABELS: tuple[EcgLabel, ...] = (
    EcgLabel("NORM", "Normal sinus rhythm", ("426783006",)),
    EcgLabel("AF", "Atrial fibrillation or flutter", ("164889003", "164890007", "195080001")),
    EcgLabel("STACH", "Sinus tachycardia", ("427084000",)),
    EcgLabel("SBRAD", "Sinus bradycardia", ("426177001",)),
    EcgLabel(
        "STE",
        "ST elevation / ischaemic pattern",
        (
            "164931005",
            "429622005",
            "164861001",
            "426434006",
            "425419005",
            "164865005",
            "22298006",
            "413444003",
            "164930006",
            "54329005",
        ),
    ),
    EcgLabel(
        "WQRS",
        "Conduction block / wide QRS",
        (
            "164909002",
            "59118001",
            "713427006",
            "733534002",
            "445118002",
            "698252002",
            "270492004",
            "195042002",
            "54016002",
            "28189009",
            "27885002",
            "6374002",
        ),
    ),
    EcgLabel(
        "PREM",
        "Premature beats (atrial or ventricular)",
        ("284470004", "427172004", "63593006", "17338001", "164884008", "11157007", "75532003"),
    ),
)

ECG_LABEL_CODES: tuple[str, ...] = tuple(label.code for label in ECG_LABELS)

_SNOMED_TO_CODE = {snomed: label.code for label in ECG_LABELS for snomed in label.snomed}


def labels_from_snomed(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Map SNOMED CT codes (as in a CinC ``# Dx:`` line) to our label codes; unknown codes are ignored."""
    found = {_SNOMED_TO_CODE[c.strip()] for c in codes if c.strip() in _SNOMED_TO_CODE}
    return [code for code in ECG_LABEL_CODES if code in found]

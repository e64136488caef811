"""The in-memory form every ECG reader produces and every ECG consumer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The standard 12 leads, in the order networks see them (PTB-XL / CinC order).
STANDARD_LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)


@dataclass(frozen=True)
class MachineStatement:
    """One interpretive statement printed by the cart, e.g. ("SINUS BRADYCARDIA", "V-rate<60")."""

    text: str
    reason: str | None = None  # the cart's own criterion for it, where the file gives one


@dataclass
class MachineInterpretation:
    """What the sending machine (an ECG cart) measured and said itself, kept to show beside our read.

    Attributes:
        measurements: cart measurements under the ``CART_MEASUREMENTS`` names of
            ``datasets.vocabulary.ecg_measurements`` (ms, bpm, degrees);
            a key is absent when the file does not carry it.
        statements: the cart's interpretive statements, in the order printed.
        severity: the cart's overall verdict where it gives one ("ABNORMAL ECG", "OTHERWISE NORMAL").
        source: the device and algorithm, e.g. "Philips Medical Products PageWriter / 0C" (as the file says).
    """

    measurements: dict[str, float] = field(default_factory=dict)
    statements: list[MachineStatement] = field(default_factory=list)
    severity: str | None = None
    source: str | None = None

    def is_empty(self) -> bool:
        return not self.measurements and not self.statements and not self.severity

    def to_json(self) -> dict[str, Any]:
        """The form stored with the read (``PreRead.machine``)."""
        return {
            "measurements": dict(self.measurements),
            "statements": [{"text": s.text, "reason": s.reason} for s in self.statements],
            "severity": self.severity,
            "source": self.source,
        }


@dataclass
class EcgRecord:
    """A resting ECG after reading: signals in millivolts, one row per standard lead.

    Attributes:
        signals: float array (n_leads, n_samples) in mV, rows ordered as ``leads``.
        leads: standard lead names (see ``STANDARD_LEADS``) of the rows.
        sampling_rate: samples per second.
        patient: free patient fields as received (id, name, sex, age, birth_date ...).
        meta: source details (format, SOP Instance UID, acquisition time, device ...).
        labels: reference labels if the source carries them (e.g. SNOMED codes in CinC headers).
        machine: the cart's own measurements and statements, when the file carries them (vendor XML,
            HL7 aECG, SCP-ECG); None otherwise.
    """

    signals: np.ndarray
    leads: tuple[str, ...]
    sampling_rate: float
    patient: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    machine: MachineInterpretation | None = None

    @property
    def duration_s(self) -> float:
        return self.signals.shape[1] / float(self.sampling_rate)

    def lead(self, name: str) -> np.ndarray:
        return self.signals[self.leads.index(name)]

    def in_standard_order(self) -> EcgRecord:
        """Rows reordered to STANDARD_LEADS (all 12 must be present)."""
        index = [self.leads.index(name) for name in STANDARD_LEADS]
        return EcgRecord(
            signals=np.ascontiguousarray(self.signals[index]),
            leads=STANDARD_LEADS,
            sampling_rate=self.sampling_rate,
            patient=dict(self.patient),
            meta=dict(self.meta),
            labels=list(self.labels),
            machine=self.machine,
        )

"""Quality of a 12-lead ECG before interpretation: can it be read, and if not, what to do.

Per lead: flat (electrode off), saturated (clipped at the amplifier's range), noisy (beat-to-beat
residual around the median beat: muscle tremor, mains, loose contact) and baseline wander; for the
record: limb-lead reversal (LA/RA: P and QRS both negative in I, V6 normal), too short
or too few beats. ``assess_quality(measurements)`` works on the arrays the measurement suite already
made (no second filtering pass).

Verdict: a record is not acceptable when it is too short, has no measurable beats, shows limb-lead
reversal, or has 3 or more unusable leads; then the read says "Repeat the ECG: …" and carries no
findings-driven level. One or two bad leads are reported but do not stop the read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets.ecg.measure.beats import ANALYSIS_RATE, Beats, smooth
from datasets.ecg.measure.suite import PACING_SPIKE_MV, EcgMeasurements
from datasets.ecg.record import STANDARD_LEADS
from datasets.vocabulary import QualityReason
from datasets.vocabulary.ecg_measurements import EcgLeadMeasurement as L
from datasets.vocabulary.ecg_measurements import EcgMeasurement

MIN_SECONDS = 8.0
MIN_BEATS = 4
FLAT_PTP_MV = 0.05
"""A lead whose high-passed peak-to-peak range is under 0.05 mV carries no ECG."""
SATURATED_FRACTION = 0.02
"""Clipping: ≥ 2 % of the samples sit exactly at the lead's maximum or minimum value."""
NOISE_RMS_MV = 0.05
"""Noisy: the RMS of the content above ~40 Hz outside the QRS is ≥ 0.05 mV (a 0.2 mV-wide band of
tremor on the tracing, several times a clean lead's)."""
WANDER_PTP_MV = 2.0
"""Baseline wander: the removed sub-0.67 Hz baseline swings more than 2 mV (20 mm)."""
MAX_BAD_LEADS = 2
REVERSAL_P_MV, REVERSAL_QRS_MV = 0.03, 0.1


@dataclass
class QualityProblem:
    code: QualityReason
    leads: list[str] = field(default_factory=list)
    text: str = ""
    blocking: bool = True


@dataclass
class QualityVerdict:
    acceptable: bool
    problems: list[QualityProblem]
    action: str | None = None


def lead_span(leads: list[str]) -> str:
    """'V1–V3' for consecutive chest leads, else a comma list in standard order."""
    ordered = [name for name in STANDARD_LEADS if name in leads]
    idx = [STANDARD_LEADS.index(name) for name in ordered]
    if len(ordered) >= 3 and all(i >= 6 for i in idx) and idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{ordered[0]}–{ordered[-1]}"
    return ", ".join(ordered)


def high_frequency_noise(diagnostic: np.ndarray, beats: Beats | None) -> np.ndarray:
    """Per lead, the RMS (mV) of the content above ~40 Hz outside the QRS complexes and pacemaker spikes:
    muscle tremor, mains and contact noise, not the beat-to-beat changes of a living heart."""
    hf = diagnostic - smooth(diagnostic)
    keep = np.ones(diagnostic.shape[1], dtype=bool)
    spikes = np.flatnonzero(np.abs(np.diff(diagnostic, 2, axis=1)).max(axis=0) > PACING_SPIKE_MV)
    if len(spikes):
        around = (spikes[:, None] + np.arange(-10, 12)[None, :]).ravel()
        keep[around[(around >= 0) & (around < len(keep))]] = False
    if beats is not None and len(beats.r_peaks):
        ms = beats.rate / 1000.0
        window = np.arange(-int(60 * ms), int(80 * ms))
        idx = (beats.r_peaks[:, None] + window[None, :]).ravel()
        keep[idx[(idx >= 0) & (idx < len(keep))]] = False
    return np.sqrt(np.mean(hf[:, keep] ** 2, axis=1))


def _per_lead(m: EcgMeasurements) -> dict[QualityReason, list[str]]:
    a = m.analysis
    assert a is not None
    ptp = np.ptp(a.diagnostic, axis=1)
    flat = ptp < FLAT_PTP_MV
    at_max = (a.raw == a.raw.max(axis=1, keepdims=True)).mean(axis=1)
    at_min = (a.raw == a.raw.min(axis=1, keepdims=True)).mean(axis=1)
    saturated = ~flat & (np.maximum(at_max, at_min) >= SATURATED_FRACTION)
    noisy = ~flat & ~saturated & (high_frequency_noise(a.diagnostic, a.beats) >= NOISE_RMS_MV)
    wander = ~flat & (np.ptp(a.raw - a.diagnostic, axis=1) >= WANDER_PTP_MV)
    names = np.array(STANDARD_LEADS)
    return {
        QualityReason.ECG_FLAT_LEAD: list(names[flat]),
        QualityReason.ECG_SATURATED_LEAD: list(names[saturated]),
        QualityReason.ECG_NOISY_LEAD: list(names[noisy]),
        QualityReason.ECG_BASELINE_WANDER: list(names[wander]),
    }


def limb_lead_reversal(m: EcgMeasurements) -> bool:
    """LA/RA reversal: P and QRS both negative in lead I (I is inverted; P axis and QRS axis swing to
    the right together), while V6 keeps a normal R wave (in dextrocardia the chest leads lose it too)."""
    lead = m.leads
    if not {"I", "V6"} <= set(lead):
        return False
    i, v6 = lead["I"], lead["V6"]
    p_i = i.get(L.P_AMPLITUDE)
    if p_i is None:
        return False
    net_qrs_i = (i.get(L.R_AMPLITUDE) or 0) + (i.get(L.Q_AMPLITUDE) or 0) + (i.get(L.S_AMPLITUDE) or 0)
    return p_i <= -REVERSAL_P_MV and net_qrs_i <= -REVERSAL_QRS_MV and (v6.get(L.R_AMPLITUDE) or 0) >= 0.3


_WORDS = {
    QualityReason.ECG_FLAT_LEAD: "no signal (electrode off?)",
    QualityReason.ECG_SATURATED_LEAD: "clipped",
    QualityReason.ECG_NOISY_LEAD: "noisy",
    QualityReason.ECG_BASELINE_WANDER: "baseline wander",
}


def assess_quality(m: EcgMeasurements, duration_s: float) -> QualityVerdict:
    problems: list[QualityProblem] = []
    if duration_s < MIN_SECONDS:
        problems.append(
            QualityProblem(
                QualityReason.ECG_TOO_SHORT,
                text=f"recording {duration_s:.1f} s long; at least {MIN_SECONDS:g} s needed",
            )
        )
    n_beats = m.values.get(EcgMeasurement.N_BEATS) or 0
    if m.analysis is None or n_beats < MIN_BEATS or m.analysis.fiducials is None:
        problems.append(
            QualityProblem(
                QualityReason.ECG_NO_BEATS,
                text=m.error or f"only {n_beats} heartbeats found; at least {MIN_BEATS} needed",
            )
        )
    if m.analysis is not None:
        bad: set[str] = set()
        for code, leads in _per_lead(m).items():
            if leads:
                blocking = code != QualityReason.ECG_BASELINE_WANDER
                bad.update(leads if blocking else [])
                problems.append(QualityProblem(code, leads, f"leads {lead_span(leads)} {_WORDS[code]}", blocking))
        if len(bad) <= MAX_BAD_LEADS:
            for problem in problems:
                if problem.code in _WORDS:
                    problem.blocking = False
    paced = (m.values.get(EcgMeasurement.PACING_SPIKE_FRACTION) or 0.0) >= 0.5  # no atrial P wave to judge the leads by
    if m.leads and not paced and limb_lead_reversal(m):
        problems.append(
            QualityProblem(
                QualityReason.ECG_LIMB_LEAD_REVERSAL,
                ["I"],
                "arm electrodes look reversed (P and QRS both negative in lead I)",
            )
        )
    blocking = [p for p in problems if p.blocking]
    action = None
    if blocking:
        action = "Repeat the ECG: " + "; ".join(p.text for p in blocking)
    return QualityVerdict(acceptable=not blocking, problems=problems, action=action)


__all__ = ["ANALYSIS_RATE", "QualityProblem", "QualityVerdict", "assess_quality", "lead_span", "limb_lead_reversal"]

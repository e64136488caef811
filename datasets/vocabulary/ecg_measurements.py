"""The ECG measurement vocabulary: one name per global number an ECG is measured by, with its unit.

:class:`EcgMeasurement` names every global measurement the project handles — ours (the measurement
suite, ``datasets.ecg.measure``) and the cart's (``MachineInterpretation.measurements``) — under the
keys the read's JSON uses (../shared/INTERFACES.md, "The read"), so ours and the machine's line up key
by key. The unit is the key's suffix (``_ms``, ``_bpm``, ``_deg``, ``_mv``); the rest are ratios or counts.

The ordered subsets below are the ones more than one place needs; their order is part of stored data
(the suite's ``values`` dict, the fusion head's feature list fixed at training), so only append.
A leaf module: it imports nothing of ours.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AXIS_MEASUREMENTS",
    "CART_MEASUREMENTS",
    "LEAD_MEASUREMENTS",
    "PRIOR_DELTA_MEASUREMENTS",
    "SUITE_MEASUREMENTS",
    "EcgLeadMeasurement",
    "EcgMeasurement",
]


class EcgMeasurement(StrEnum):
    """A global measurement of one 12-lead ECG (the value is the key in the read's ``measurements``)."""

    HEART_RATE = "heart_rate_bpm"
    """Heart rate, beats per minute: 60000 / mean RR interval over every R peak of the strip."""
    RR_MEAN = "rr_mean_ms"
    """Mean RR interval, ms, over every R peak of the strip."""
    RR_SD = "rr_sd_ms"
    """Standard deviation of the RR intervals, ms."""
    RR_IRREGULARITY = "rr_irregularity"
    """RMSSD / mean RR, a ratio (sinus rhythm typically < 0.05, atrial fibrillation ≫ 0.1)."""
    RR_SUCCESSIVE_IRREGULARITY = "rr_successive_irregularity"
    """Median |ΔRR| / median RR, a ratio: like ``RR_IRREGULARITY`` but blind to a few ectopic beats."""
    RR_INTERVAL = "rr_interval_ms"
    """RR interval, ms, as a cart prints it (our suite reports ``RR_MEAN`` instead)."""
    PR_INTERVAL = "pr_interval_ms"
    """PR interval, ms: P onset to QRS onset of the median beat."""
    P_DURATION = "p_duration_ms"
    """P wave duration, ms: P onset to P end of the median beat."""
    QRS_DURATION = "qrs_duration_ms"
    """QRS duration, ms: QRS onset to QRS end of the median beat."""
    QT_INTERVAL = "qt_interval_ms"
    """QT interval, ms: QRS onset to T end of the median beat."""
    QTC_BAZETT = "qtc_bazett_ms"
    """QT corrected for heart rate by Bazett, ms: QT / RR^(1/2), RR in seconds."""
    QTC_FRIDERICIA = "qtc_fridericia_ms"
    """QT corrected for heart rate by Fridericia, ms: QT / RR^(1/3), RR in seconds."""
    P_AXIS = "p_axis_deg"
    """Frontal P axis, degrees in (-180, 180]."""
    QRS_AXIS = "qrs_axis_deg"
    """Frontal QRS axis, degrees in (-180, 180]."""
    T_AXIS = "t_axis_deg"
    """Frontal T axis, degrees in (-180, 180]."""
    SOKOLOW_LYON = "sokolow_lyon_mv"
    """Sokolow-Lyon voltage, mV: S in V1 + the larger R in V5 or V6 (left ventricular hypertrophy)."""
    CORNELL = "cornell_mv"
    """Cornell voltage, mV: R in aVL + S in V3 (left ventricular hypertrophy)."""
    QRS_LIMB_MAX = "qrs_limb_max_mv"
    """Largest QRS peak-to-peak amplitude in the limb leads, mV (low voltage below 0.5)."""
    QRS_PRECORDIAL_MAX = "qrs_precordial_max_mv"
    """Largest QRS peak-to-peak amplitude in the chest leads, mV (low voltage below 1.0)."""
    P_WAVE_CONSISTENCY = "p_wave_consistency"
    """Median correlation of each beat's P wave (II, V1) with the median P wave, -1 … 1: ≈1 in sinus
    rhythm, low in atrial fibrillation; 0 when there is no P wave."""
    PACING_SPIKE_FRACTION = "pacing_spike_fraction"
    """Share of beats (0 … 1) with a pacemaker spike in the 150 ms before the QRS fiducial."""
    N_BEATS = "n_beats"
    """Number of R peaks found in the strip (a count)."""
    N_BEATS_MEDIAN = "n_beats_median"
    """Number of beats that formed the median beat (a count)."""


def _values(*members: StrEnum) -> tuple[str, ...]:
    """The plain-string keys of ``members`` (plain ``str``, so dicts keyed by them serialise as before)."""
    return tuple(member.value for member in members)


M = EcgMeasurement

SUITE_MEASUREMENTS: tuple[str, ...] = _values(
    M.HEART_RATE, M.RR_MEAN, M.RR_SD, M.RR_IRREGULARITY, M.RR_SUCCESSIVE_IRREGULARITY,
    M.PR_INTERVAL, M.P_DURATION, M.QRS_DURATION, M.QT_INTERVAL, M.QTC_BAZETT, M.QTC_FRIDERICIA,
    M.P_AXIS, M.QRS_AXIS, M.T_AXIS,
    M.SOKOLOW_LYON, M.CORNELL, M.QRS_LIMB_MAX, M.QRS_PRECORDIAL_MAX,
    M.P_WAVE_CONSISTENCY, M.PACING_SPIKE_FRACTION, M.N_BEATS, M.N_BEATS_MEDIAN,
)  # fmt: skip
"""What our measurement suite reports for every record (None where it could not measure), in order."""

CART_MEASUREMENTS: tuple[str, ...] = _values(
    M.HEART_RATE, M.RR_INTERVAL, M.PR_INTERVAL, M.P_DURATION, M.QRS_DURATION, M.QT_INTERVAL,
    M.QTC_BAZETT, M.QTC_FRIDERICIA, M.P_AXIS, M.QRS_AXIS, M.T_AXIS,
)  # fmt: skip
"""The global measurements a cart prints that the readers keep (``MachineInterpretation.measurements``)."""

AXIS_MEASUREMENTS: tuple[str, ...] = _values(M.P_AXIS, M.QRS_AXIS, M.T_AXIS)
"""The frontal axes: angles on a circle (-179° and +179° are neighbours), compared and fed as such."""

PRIOR_DELTA_MEASUREMENTS: tuple[str, ...] = _values(
    M.HEART_RATE, M.PR_INTERVAL, M.QRS_DURATION, M.QT_INTERVAL, M.QTC_BAZETT, M.QTC_FRIDERICIA,
    M.P_AXIS, M.QRS_AXIS, M.T_AXIS,
)  # fmt: skip
"""What a comparison with the patient's prior ECG reports as changes (``PriorComparison.deltas``), in order."""

del M


class EcgLeadMeasurement(StrEnum):
    """An amplitude of one lead's median beat (the key in the read's ``lead_measurements[lead]``), in mV
    relative to the lead's PR-segment level, the isoelectric reference carts use."""

    P_AMPLITUDE = "p_amp_mv"
    """P wave amplitude, mV: the signed extreme between P onset and P end."""
    Q_AMPLITUDE = "q_amp_mv"
    """Q wave amplitude, mV (≤ 0): the deepest negative deflection of the QRS before its R peak."""
    R_AMPLITUDE = "r_amp_mv"
    """R wave amplitude, mV (≥ 0): the tallest positive deflection of the QRS."""
    S_AMPLITUDE = "s_amp_mv"
    """S wave amplitude, mV (≤ 0): the deepest negative deflection of the QRS after its R peak."""
    ST_J = "st_j_mv"
    """ST level at the J point (QRS offset), mV: the mean over 10 ms."""
    ST_J60 = "st_j60_mv"
    """ST level 60 ms after the J point, mV: the mean over 10 ms."""
    T_AMPLITUDE = "t_amp_mv"
    """T wave amplitude, mV: the signed extreme between J + 80 ms and T end."""


LEAD_MEASUREMENTS: tuple[str, ...] = _values(*EcgLeadMeasurement)
"""What the suite reports for each of the 12 leads (``EcgMeasurements.leads[lead]``), in order (stored)."""

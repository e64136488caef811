"""Interpretive ECG statements: the text codes of ``PreRead.statements`` (what a 12-lead cart prints
under the tracing). Codes are stable; the words come from the locale (``name`` is the English one).
Each is made from its definition on the measurements (models/ecg/statements.py) and, where the
network has a matching label, carries the network's probability as evidence."""

from __future__ import annotations

from enum import StrEnum


class EcgStatement(StrEnum):
    """One interpretive statement of an ECG read."""

    SINUS_RHYTHM = "sinus_rhythm"
    """Consistent P wave before every QRS, frontal P axis 0–90° territory, regular, rate 60–100 bpm."""

    SINUS_BRADYCARDIA = "sinus_bradycardia"
    """Sinus rhythm under 60 bpm."""

    SINUS_TACHYCARDIA = "sinus_tachycardia"
    """Sinus rhythm over 100 bpm."""

    ATRIAL_FIBRILLATION = "atrial_fibrillation"
    """Atrial fibrillation or flutter: irregularly irregular RR intervals and no consistent P wave."""

    AF_RAPID_RESPONSE = "af_rapid_ventricular_response"
    """Atrial fibrillation with a ventricular rate over 110 bpm."""

    PACED_RHYTHM = "paced_rhythm"
    """Pacemaker rhythm: pacemaker spikes before most beats (or the network's paced label) and a wide QRS."""

    RHYTHM_UNDETERMINED = "rhythm_undetermined"
    """Neither sinus nor atrial fibrillation could be established (no clear P wave but regular RR,
    e.g. junctional rhythm or flutter with fixed block): the reader must look."""

    FIRST_DEGREE_AV_BLOCK = "first_degree_av_block"
    """Sinus rhythm with a PR interval over 200 ms."""

    RBBB = "right_bundle_branch_block"
    """QRS ≥ 120 ms with a dominant terminal R in V1 and a wide S in I / V6."""

    LBBB = "left_bundle_branch_block"
    """QRS ≥ 120 ms with a dominant S (QS/rS) in V1 and a broad R without Q in I / V6."""

    WIDE_QRS = "nonspecific_intraventricular_conduction_delay"
    """QRS ≥ 120 ms without the morphology of a right or left bundle branch block."""

    QTC_PROLONGED = "qtc_prolonged"
    """QTc (Bazett) over 450 ms in men, 460 ms in women (or when sex is unknown)."""

    LEFT_AXIS_DEVIATION = "left_axis_deviation"
    """Frontal QRS axis between −30° and −90°."""

    RIGHT_AXIS_DEVIATION = "right_axis_deviation"
    """Frontal QRS axis between +90° and +180°."""

    EXTREME_AXIS = "extreme_axis_deviation"
    """Frontal QRS axis between −90° and −180° (north-west)."""

    LOW_VOLTAGE = "low_qrs_voltage"
    """QRS under 0.5 mV peak-to-peak in every limb lead, or under 1.0 mV in every chest lead."""

    LVH_VOLTAGE = "lvh_by_voltage"
    """Voltage criteria for left ventricular hypertrophy: Sokolow-Lyon ≥ 3.5 mV, or Cornell > 2.8 mV
    (men) / 2.0 mV (women)."""

    ST_ELEVATION = "st_elevation_stemi_criteria"
    """ST elevation at the J point in two contiguous leads: ≥ 0.1 mV, except V2–V3 where ≥ 0.2 mV in
    men (≥ 0.25 mV under 40) and ≥ 0.15 mV in women (ESC/AHA 4th universal definition of MI)."""

"""Why a study cannot be read: the coded reasons of a quality verdict (``quality.reasons``).

Codes are stable (APIs, configs, catalogs); the words a person reads come from the locale's message
catalog, keyed by the code. Each feature adds the reasons it detects here, with a docstring.
"""

from __future__ import annotations

from enum import StrEnum


class QualityReason(StrEnum):
    """A reason a study failed its acceptance check before interpretation."""

    # --- ECG -------------------------------------------------------------------------------------
    ECG_TOO_SHORT = "ecg_too_short"
    """The recording is shorter than the reader needs for a rhythm read."""

    ECG_FLAT_LEAD = "ecg_flat_lead"
    """One or more leads carry no signal (electrode off)."""

    ECG_SATURATED_LEAD = "ecg_saturated_lead"
    """One or more leads clip at the amplifier's range."""

    ECG_NOISY_LEAD = "ecg_noisy_lead"
    """One or more leads are dominated by noise (muscle, mains)."""

    ECG_BASELINE_WANDER = "ecg_baseline_wander"
    """One or more leads drift too far to measure ST levels."""

    ECG_LIMB_LEAD_REVERSAL = "ecg_limb_lead_reversal"
    """The limb electrodes look swapped (e.g. negative P and QRS in I, positive in aVR)."""

    ECG_NO_BEATS = "ecg_no_beats"
    """Too few heartbeats could be found to measure anything (noise, artefact, or no signal)."""

    # --- Chest X-ray -----------------------------------------------------------------------------
    CXR_NOT_CHEST = "cxr_not_chest"
    """The image is not a chest radiograph (e.g. a CT slice, a hand)."""

    CXR_LATERAL = "cxr_lateral"
    """A lateral view: the model reads frontal (PA/AP) films only."""

    CXR_ROTATED = "cxr_rotated"
    """The film is rotated by 90° or 180°."""

    CXR_INVERTED = "cxr_inverted"
    """Grey levels are inverted (a MONOCHROME1 image labelled MONOCHROME2, or the reverse)."""

    CXR_PAEDIATRIC = "cxr_paediatric"
    """A child's film: the model was trained on adults."""

    CXR_TOO_SMALL = "cxr_too_small"
    """Too few pixels for a diagnostic read."""

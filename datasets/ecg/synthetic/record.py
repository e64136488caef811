"""One synthetic 12-lead ECG from its labels: draw the rhythm and the record's morphology, render each
beat from the templates, add atrial activity and noise.

The random draws happen in a fixed order (rhythm, morphology, conduction, ischaemia, ectopy, then atrial
activity and noise after rendering): a seeded generator gives the same record for as long as
``GENERATOR_VERSION`` stays, so keep that order when changing this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal as sps

from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.synthetic.cache import GENERATOR_VERSION
from datasets.ecg.synthetic.canvas import Canvas
from datasets.ecg.synthetic.rhythm import (
    Beat,
    fibrillation_beats,
    flutter_beats,
    insert_premature_beats,
    sinus_beats,
)
from datasets.ecg.synthetic.templates import J_POINT_S, BeatTemplates, load_templates
from datasets.ecg.synthetic.waves import (
    FLUTTER_WEIGHTS,
    LEAD_AXES,
    ST_TERRITORIES,
    fibrillatory_waves,
    lead_indices,
    recording_noise,
    unit_vector,
)
from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from datasets.vocabulary.ecg_measurements import EcgMeasurement

# The served ECG labels (the vocabulary's one definition): a record's labels and the dataset's columns.
LABEL_CODES: tuple[str, ...] = ECG_LABEL_CODES
RHYTHM_LABELS: tuple[str, ...] = ("NORM", "STACH", "SBRAD", "AF")
MORPHOLOGY_LABELS: tuple[str, ...] = ("STE", "WQRS", "PREM")

# Drawn heart rates (bpm): inside the clinical definitions (sinus 60–100, tachycardia > 100,
# bradycardia < 60) with a margin, so a measured rate never lands on the wrong side of a boundary.
HEART_RATE_RANGES: dict[str, tuple[float, float]] = {
    "NORM": (62.0, 98.0),
    "STACH": (105.0, 160.0),
    "SBRAD": (36.0, 56.0),
    "AF": (55.0, 140.0),  # mean ventricular rate
}
WIDE_QRS_MS = (120.0, 180.0)
NORMAL_QRS_MS = (80.0, 100.0)
ST_ELEVATION_MV = (0.12, 0.4)
N_LEADS = len(STANDARD_LEADS)


@dataclass
class _Rhythm:
    """The drawn rhythm: beat times, and the flutter wave train where there is one."""

    beats: list[Beat]
    heart_rate: float
    flutter_hz: float | None = None  # as reported (0.1 bpm resolution): the sawtooth is drawn at this rate
    flutter_phase: float = 0.0


@dataclass
class _Morphology:
    """How this record's beats look: the blended template components, per-lead gains, conduction,
    ST deviation, PR shortening and the shape of its premature ventricular complexes."""

    p_wave: np.ndarray
    qrs: np.ndarray
    st_t: np.ndarray
    p_center: float
    template_qrs_s: float
    p_gain: np.ndarray
    qrs_gain: np.ndarray
    st_gain: np.ndarray
    qrs_s: float = 0.0
    qrs_scale: float = 1.0
    bbb: str | None = None  # "RBBB" / "LBBB"
    bbb_amplitude: float = 0.0
    lbbb_amplitude: float = 0.0
    st_deviation: np.ndarray | None = None
    pr_factor: float = 1.0
    pvc_main: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pvc_late: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pvc_width: float = 0.0
    pvc_amplitude: float = 0.0


def _rhythm_of(labels: set[str] | frozenset[str] | list[str]) -> tuple[str, set[str]]:
    """(the rhythm label, every label of the record): NORM when no rhythm is asked for."""
    wanted = set(labels)
    unknown = wanted - set(LABEL_CODES)
    if unknown:
        raise ValueError(f"unknown label codes {sorted(unknown)}; known: {', '.join(LABEL_CODES)}")
    rhythms = wanted & set(RHYTHM_LABELS)
    if len(rhythms) > 1:
        raise ValueError(f"at most one rhythm label, got {sorted(rhythms)}")
    rhythm = rhythms.pop() if rhythms else "NORM"
    wanted.add(rhythm)
    return rhythm, wanted


def _draw_rhythm(rng: np.random.Generator, rhythm: str, duration_s: float, params: dict[str, object]) -> _Rhythm:
    """Rhythm → beat times (AF is atrial flutter with variable block a quarter of the time)."""
    low, high = HEART_RATE_RANGES[rhythm]
    heart_rate = float(rng.uniform(low, high))
    drawn = _Rhythm(beats=[], heart_rate=heart_rate)
    flutter = False
    if rhythm == "AF":
        flutter = bool(rng.random() < 0.25)
        if flutter:
            flutter_hz = rng.uniform(240, 340) / 60.0
            drawn.flutter_phase = rng.uniform(0, 1.0 / flutter_hz)
            drawn.beats = flutter_beats(rng, flutter_hz, drawn.flutter_phase, duration_s)
            rate_bpm = round(flutter_hz * 60.0, 1)
            params["flutter_rate_bpm"] = rate_bpm
            drawn.flutter_hz = float(rate_bpm) / 60.0
        else:
            drawn.beats = fibrillation_beats(rng, heart_rate, duration_s)
    else:
        # All three depths are drawn (whatever the rhythm): the draw order is part of the seed's record.
        rsa = {"NORM": rng.uniform(0.0, 0.04), "STACH": rng.uniform(0.0, 0.015), "SBRAD": rng.uniform(0.0, 0.06)}
        drawn.beats = sinus_beats(rng, heart_rate, duration_s, rsa=rsa[rhythm], jitter=0.006)
    # The rate drawn is the true value of the measured heart rate (the suite is checked against it); the other
    # parameters (qrs_ms, flutter_rate_bpm, st_elevation_mv ...) describe the draw and are not measurements.
    # Plain str key (.value): the draw travels in the record's meta, which must serialise as before.
    params[EcgMeasurement.HEART_RATE.value] = round(heart_rate, 1) if not flutter else None
    params["atrial_flutter"] = flutter
    return drawn


def _draw_shape(rng: np.random.Generator, templates: BeatTemplates) -> _Morphology:
    """A blend of two template variants, with per-lead gains."""
    a, b = rng.choice(templates.n_variants, size=2, replace=False)
    mix = rng.uniform(0.0, 1.0)
    lead_gain = rng.uniform(0.7, 1.3, size=N_LEADS) * rng.uniform(0.7, 1.4)
    st_gain = lead_gain * rng.uniform(0.7, 1.2)
    p_gain = lead_gain * rng.uniform(0.6, 1.2)
    return _Morphology(
        p_wave=(1 - mix) * templates.p_wave[a] + mix * templates.p_wave[b],
        qrs=(1 - mix) * templates.qrs[a] + mix * templates.qrs[b],
        st_t=(1 - mix) * templates.st_t[a] + mix * templates.st_t[b],
        p_center=(1 - mix) * templates.p_center_s[a] + mix * templates.p_center_s[b],
        template_qrs_s=((1 - mix) * templates.qrs_ms[a] + mix * templates.qrs_ms[b]) / 1000.0,
        p_gain=p_gain,
        qrs_gain=lead_gain.copy(),
        st_gain=st_gain,
    )


def _draw_conduction(rng: np.random.Generator, wide: bool, shape: _Morphology, params: dict[str, object]) -> None:
    """QRS duration and, for a wide QRS, a bundle-branch-block shape."""
    if wide:
        shape.qrs_s = rng.uniform(*WIDE_QRS_MS) / 1000.0
        shape.bbb = "RBBB" if rng.random() < 0.5 else "LBBB"
        if shape.bbb == "RBBB":
            # Right ventricle activates late: normal initial QRS, terminal R' in V1-V2 and broad S
            # in the lateral leads; secondary T inversion in V1-V2.
            shape.qrs_scale = rng.uniform(1.0, 1.15)
            shape.st_gain[lead_indices("V1", "V2")] *= np.array([-0.6, -0.2])
        else:
            # Whole ventricle activates slowly from the left: broad QS in V1-V3, broad notched R
            # laterally, T waves discordant to the QRS in the lateral leads.
            shape.qrs_scale = shape.qrs_s / shape.template_qrs_s
            shape.qrs_gain[lead_indices("V1", "V2", "V3", "I", "aVL", "V5", "V6")] *= 0.3
            shape.st_gain[lead_indices("I", "aVL", "V5", "V6")] *= -0.6
    else:
        shape.qrs_s = rng.uniform(*NORMAL_QRS_MS) / 1000.0
        shape.qrs_scale = shape.qrs_s / shape.template_qrs_s
    params["qrs_ms"] = round(shape.qrs_s * 1000.0, 1)
    params["bundle_branch_block"] = shape.bbb
    shape.bbb_amplitude = rng.uniform(0.4, 0.9)
    shape.lbbb_amplitude = rng.uniform(0.8, 1.6)


def _draw_ischaemia_and_ectopy(
    rng: np.random.Generator, elevated: bool, heart_rate: float, shape: _Morphology, params: dict[str, object]
) -> None:
    """ST elevation over a territory (with reciprocal depression), the PR interval, and the PVC shape."""
    if elevated:
        territory = str(rng.choice(sorted(ST_TERRITORIES)))
        elevation = rng.uniform(*ST_ELEVATION_MV)
        shape.st_deviation = elevation * ST_TERRITORIES[territory]
        params["st_territory"], params["st_elevation_mv"] = territory, round(float(elevation), 3)
    # PR interval shortens as the rate rises.
    shape.pr_factor = rng.uniform(0.8, 1.0) * (1.0 - 0.25 * np.clip((heart_rate - 60.0) / 100.0, 0.0, 1.0))
    shape.pvc_main, shape.pvc_late = unit_vector(rng), unit_vector(rng)
    shape.pvc_width = rng.uniform(0.13, 0.18)
    shape.pvc_amplitude = rng.uniform(0.9, 1.8)


def _render_pvc(canvas: Canvas, beat: Beat, shape: _Morphology, st_scale: float) -> None:
    """Premature ventricular complex: wide, bizarre, no P wave, discordant T wave."""
    main = shape.pvc_amplitude * (LEAD_AXES @ shape.pvc_main)
    late = 0.4 * shape.pvc_amplitude * (LEAD_AXES @ shape.pvc_late)
    canvas.gaussian(main, beat.r_s, shape.pvc_width / 5)
    canvas.gaussian(late, beat.r_s + shape.pvc_width / 4, shape.pvc_width / 6)
    canvas.gaussian(-0.35 * main, beat.r_s + shape.pvc_width / 2 + 0.17 * st_scale, 0.06 * st_scale)


def _render_rbbb(canvas: Canvas, beat: Beat, shape: _Morphology, j_point: float) -> float:
    """Terminal R' in V1-V2 (broad S laterally); returns the J point, moved to the QRS end."""
    onset = beat.r_s - 0.5 * shape.template_qrs_s * shape.qrs_scale
    center, sigma = onset + shape.qrs_s - 0.04, 0.018
    terminal = np.zeros(N_LEADS)
    terminal[lead_indices("V1", "V2", "aVR")] = shape.bbb_amplitude * np.array([1.0, 0.7, 0.4])
    terminal[lead_indices("I", "aVL", "V5", "V6")] = -0.4 * shape.bbb_amplitude * np.array([0.8, 0.6, 0.9, 1.0])
    canvas.gaussian(terminal, center, sigma)
    return max(j_point, onset + shape.qrs_s)


def _render_lbbb(canvas: Canvas, beat: Beat, shape: _Morphology) -> None:
    """Broad QS in V1-V3 and a broad notched R in the lateral leads."""
    qrs_s, amplitude = shape.qrs_s, shape.lbbb_amplitude
    sigma = qrs_s / 6
    qs = np.zeros(N_LEADS)
    qs[lead_indices("V1", "V2", "V3", "aVR")] = -amplitude * np.array([0.9, 1.0, 0.7, 0.4])
    canvas.gaussian(qs, beat.r_s, sigma * 1.2)
    notched = np.zeros(N_LEADS)
    notched[lead_indices("I", "aVL", "V5", "V6")] = 0.7 * amplitude * np.array([0.8, 0.7, 0.9, 1.0])
    canvas.gaussian(notched, beat.r_s - qrs_s / 6, sigma * 0.8)
    canvas.gaussian(0.9 * notched, beat.r_s + qrs_s / 6, sigma * 0.8)


def _render_st_elevation(canvas: Canvas, deviation: np.ndarray, j_point: float, st_scale: float) -> None:
    """Elevation rises at the J point, holds through the ST segment and merges into the T wave (a
    "coved" / convex STEMI shape), then returns to baseline at the T wave's end."""
    plateau, fall = 0.17 * st_scale, 0.035 * st_scale
    canvas.profile(
        deviation,
        j_point - 0.02,
        j_point + plateau + 5 * fall,
        lambda tt, j=j_point, p=plateau, f=fall: (
            0.5 * (1 + np.tanh((tt - j - 0.01) / 0.006)) * 0.5 * (1 - np.tanh((tt - j - p) / f))
        ),
    )


def _render_beat(canvas: Canvas, beat: Beat, shape: _Morphology) -> None:
    """One beat: P wave (sinus), QRS (with its bundle-branch block), ST-T, and any ST elevation."""
    # QT ∝ √RR (Bazett): stretch the ST-T segment, not the QRS.
    st_scale = float(np.clip(np.sqrt(max(beat.rr_s, 0.25)), 0.6, 1.25))
    if beat.ventricular:
        _render_pvc(canvas, beat, shape, st_scale)
        return
    if beat.sinus_p:
        canvas.place(shape.p_wave, shape.p_center, beat.r_s + shape.p_center * shape.pr_factor, 0.85, shape.p_gain)
    canvas.place(shape.qrs, 0.0, beat.r_s, shape.qrs_scale, shape.qrs_gain)
    j_point = beat.r_s + J_POINT_S * shape.qrs_scale
    if shape.bbb == "RBBB":
        j_point = _render_rbbb(canvas, beat, shape, j_point)
    elif shape.bbb == "LBBB":
        _render_lbbb(canvas, beat, shape)
    canvas.place(shape.st_t, J_POINT_S, j_point, st_scale, shape.st_gain)
    if shape.st_deviation is not None:
        _render_st_elevation(canvas, shape.st_deviation, j_point, st_scale)


def _add_atrial_activity(rng: np.random.Generator, canvas: Canvas, rhythm: _Rhythm) -> None:
    """Flutter waves (a negative sawtooth in the inferior leads) or fibrillatory waves."""
    t = canvas.times()
    if rhythm.flutter_hz is not None:
        saw = sps.sawtooth(2 * np.pi * rhythm.flutter_hz * (t - rhythm.flutter_phase), width=0.8)
        weights = FLUTTER_WEIGHTS * rng.uniform(0.1, 0.25) * rng.uniform(0.7, 1.3, size=N_LEADS)
        canvas.everywhere(weights[:, None] * saw[None, :])
    else:
        canvas.everywhere(fibrillatory_waves(rng, t))


def simulate_ecg(
    labels: set[str] | frozenset[str] | list[str],
    rng: np.random.Generator,
    sampling_rate: float = TARGET_SAMPLING_RATE,
    duration_s: float = WINDOW_SECONDS,
    cache_dir: Path | None = None,
) -> EcgRecord:
    """One synthetic 12-lead ECG showing exactly ``labels`` (our label codes).

    At most one rhythm label (NORM, STACH, SBRAD, AF); without one the rhythm is normal sinus and
    NORM is added to the record's labels. Signals are in mV, rows in STANDARD_LEADS order, raw
    (noisy, not yet preprocessed). ``meta`` holds the drawn parameters (heart rate, QRS duration,
    ST territory ...) so tests and notebooks can check what was simulated.
    """
    rhythm, wanted = _rhythm_of(labels)
    templates = load_templates(cache_dir)
    canvas = Canvas(sampling_rate, duration_s)
    params: dict[str, object] = {"rhythm": rhythm}
    drawn = _draw_rhythm(rng, rhythm, duration_s, params)
    params["n_premature"] = insert_premature_beats(rng, drawn.beats, duration_s) if "PREM" in wanted else 0
    shape = _draw_shape(rng, templates)
    _draw_conduction(rng, "WQRS" in wanted, shape, params)
    _draw_ischaemia_and_ectopy(rng, "STE" in wanted, drawn.heart_rate, shape, params)
    for beat in drawn.beats:
        _render_beat(canvas, beat, shape)
    if rhythm == "AF":
        _add_atrial_activity(rng, canvas, drawn)
    canvas.everywhere(recording_noise(rng, canvas))
    meta = {
        "label_system": "preread",
        "source": "synthetic",
        "generator": "preread neurokit2-template ECG simulator",
        "generator_version": GENERATOR_VERSION,
        "synthetic": params,
    }
    return EcgRecord(
        signals=canvas.output().copy(),
        leads=STANDARD_LEADS,
        sampling_rate=float(sampling_rate),
        meta=meta,
        labels=[code for code in LABEL_CODES if code in wanted],
    )

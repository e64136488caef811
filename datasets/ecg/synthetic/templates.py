"""Beat templates of the synthetic ECG: ECGSYN (``neurokit2.ecg_simulate(method="multileads")``) run a
handful of times at 60 bpm with perturbed wave parameters; each run's median beat per lead is cut into
P wave, QRS and ST-T with smooth cross-fades. Made once per generator version and cached on disk."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps
from tqdm.auto import tqdm

from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.synthetic.cache import GENERATOR_VERSION, atomic_savez, default_cache_dir

TEMPLATE_RATE = 500  # Hz; templates are functions of time, rendered at any output rate
TEMPLATE_START_S, TEMPLATE_END_S = -0.5, 0.6  # relative to the R peak
J_POINT_S = 0.085
"""The J point on the template's time axis (s after R): where the ST-T component is anchored."""
_TEMPLATE_SEED = 1729  # templates belong to the generator version, not to a dataset seed
_N_TEMPLATE_VARIANTS = 6
# ECGSYN defaults (neurokit2): angles (deg), amplitudes and widths (rad) of P, Q, R, S, T.
_ECGSYN_TI = np.array([-70.0, -15.0, 0.0, 15.0, 100.0])
_ECGSYN_AI = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
_ECGSYN_BI = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
# Cross-fade windows (s, relative to R at 60 bpm) between P|QRS and QRS|ST-T: the PR and early
# ST segments, where the template sits near baseline.
_P_QRS_FADE = (-0.115, -0.085)
_QRS_ST_FADE = (0.07, 0.10)
_MAX_P_MV, _MAX_T_MV = 0.22, 0.7

# Typical peak amplitude per lead (mV) that each template lead is scaled to; ECGSYN rescales each
# lead to the same range, which would make aVL as large as V3.
_LEAD_PEAK_MV = dict(zip(STANDARD_LEADS, (0.8, 1.1, 0.6, 0.7, 0.5, 0.8, 0.9, 1.4, 1.5, 1.6, 1.4, 1.1)))


@dataclass(frozen=True)
class BeatTemplates:
    """Per-variant beat components, each [variants, 12, samples] on the template time grid."""

    p_wave: np.ndarray
    qrs: np.ndarray
    st_t: np.ndarray
    p_center_s: np.ndarray  # [variants] time of the P wave's centre relative to R
    qrs_ms: np.ndarray  # [variants] measured QRS duration

    @property
    def n_variants(self) -> int:
        return self.qrs.shape[0]


def template_times() -> np.ndarray:
    n = int(round((TEMPLATE_END_S - TEMPLATE_START_S) * TEMPLATE_RATE)) + 1
    return TEMPLATE_START_S + np.arange(n) / TEMPLATE_RATE


def smooth_step(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before ``start``, 1 after ``end``, raised-cosine in between."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _simulate_template_variant(variant: int) -> np.ndarray:
    """One ECGSYN run at 60 bpm with perturbed wave parameters → median beat [12, samples], mV."""
    import neurokit2 as nk  # noqa: PLC0415 - heavy; needed only when the template cache is cold

    rng = np.random.default_rng([_TEMPLATE_SEED, variant])
    # Only amplitudes and the T wave vary between variants. ECGSYN's Q/R/S widths are kept: its
    # ODE solver under-resolves narrower Gaussians (jagged QRS), and a QRS bump's height scales
    # with width squared. The QRS is compressed in time at rendering instead.
    ti = _ECGSYN_TI.copy()
    ti[0] = rng.uniform(-75, -65)
    ti[4] = rng.uniform(92, 108)
    ai = _ECGSYN_AI * rng.uniform(0.8, 1.2, size=5)
    bi = _ECGSYN_BI * np.array([1.0, 1.0, 1.0, 1.0, rng.uniform(0.85, 1.15)])
    duration_s = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = nk.ecg_simulate(
            duration=duration_s,
            sampling_rate=TEMPLATE_RATE,
            heart_rate=60,
            heart_rate_std=0.5,
            method="multileads",
            noise=0,
            random_state=int(rng.integers(2**31)),
            ti=ti,
            ai=ai,
            bi=bi,
        )
    signals = frame[list(STANDARD_LEADS)].to_numpy().T  # [12, n]
    # Beats: peaks of the summed absolute slope across leads (the QRS), then refined to lead I's R.
    slope = np.abs(np.diff(signals, axis=1)).sum(axis=0)
    peaks, _ = sps.find_peaks(slope, distance=int(0.6 * TEMPLATE_RATE), height=0.5 * slope.max())
    times = template_times()
    offsets = np.round(times * TEMPLATE_RATE).astype(int)
    beats = []
    for peak in peaks:
        lo, hi = peak - 25, peak + 25
        if lo < 0 or hi >= signals.shape[1]:
            continue
        r = lo + int(np.argmax(np.abs(signals[0, lo:hi] - np.median(signals[0]))))
        if r + offsets[0] < 0 or r + offsets[-1] >= signals.shape[1]:
            continue
        beats.append(signals[:, r + offsets])
    if len(beats) < 3:
        raise RuntimeError(f"ECGSYN template variant {variant}: only {len(beats)} complete beats found")
    beat = np.median(np.stack(beats), axis=0)
    # Remove the baseline as a line through the pre-P and post-T segments, then taper the edges
    # so a placed beat starts and ends at exactly zero.
    pre = (times >= TEMPLATE_START_S) & (times < TEMPLATE_START_S + 0.08)
    post = times > TEMPLATE_END_S - 0.08
    pre_level, post_level = beat[:, pre].mean(axis=1), beat[:, post].mean(axis=1)
    pre_t, post_t = times[pre].mean(), times[post].mean()
    slope_per_s = (post_level - pre_level) / (post_t - pre_t)
    beat = beat - (pre_level[:, None] + slope_per_s[:, None] * (times - pre_t)[None, :])
    taper = smooth_step(times, TEMPLATE_START_S, TEMPLATE_START_S + 0.04) * (
        1.0 - smooth_step(times, TEMPLATE_END_S - 0.04, TEMPLATE_END_S)
    )
    beat = beat * taper
    peak_mv = np.array([_LEAD_PEAK_MV[lead] for lead in STANDARD_LEADS])
    return beat * (peak_mv / np.abs(beat).max(axis=1))[:, None]


def _split_components(beat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    times = template_times()
    to_qrs = smooth_step(times, *_P_QRS_FADE)
    to_st = smooth_step(times, *_QRS_ST_FADE)
    p_weight, qrs_weight, st_weight = 1.0 - to_qrs, to_qrs * (1.0 - to_st), to_st
    p_wave, qrs, st_t = beat * p_weight, beat * qrs_weight, beat * st_weight
    # Scaling a lead to its typical peak (in _simulate_template_variant) can leave the P or T wave
    # as the peak of a lead with a small QRS (ECGSYN's lead II): cap them at physiological sizes.
    p_wave *= np.minimum(1.0, _MAX_P_MV / (np.abs(p_wave).max(axis=1, keepdims=True) + 1e-9))
    st_t *= np.minimum(1.0, _MAX_T_MV / (np.abs(st_t).max(axis=1, keepdims=True) + 1e-9))
    p_energy = np.abs(p_wave).sum(axis=0)
    p_center = float(np.sum(times * p_energy) / np.sum(p_energy))
    # QRS duration: span where the summed absolute slope exceeds 10% of its peak (a global,
    # multi-lead measure in the spirit of the 12-lead QRS onset/offset definitions).
    slope = np.abs(np.gradient(qrs, axis=1)).sum(axis=0)
    above = np.flatnonzero(slope > 0.1 * slope.max())
    qrs_ms = (above[-1] - above[0]) / TEMPLATE_RATE * 1000.0
    return p_wave, qrs, st_t, p_center, qrs_ms


def _build_templates() -> BeatTemplates:
    parts = [
        _split_components(_simulate_template_variant(v))
        for v in tqdm(range(_N_TEMPLATE_VARIANTS), desc="neurokit2 beat templates", leave=False)
    ]
    return BeatTemplates(
        p_wave=np.stack([p[0] for p in parts]),
        qrs=np.stack([p[1] for p in parts]),
        st_t=np.stack([p[2] for p in parts]),
        p_center_s=np.array([p[3] for p in parts]),
        qrs_ms=np.array([p[4] for p in parts]),
    )


_TEMPLATES: dict[Path, BeatTemplates] = {}


def load_templates(cache_dir: Path | None = None) -> BeatTemplates:
    """The beat templates, from memory, the disk cache, or freshly simulated (a few seconds)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache_dir in _TEMPLATES:
        return _TEMPLATES[cache_dir]
    path = cache_dir / f"ecg-beat-templates-v{GENERATOR_VERSION}.npz"
    templates = None
    if path.is_file():
        try:
            with np.load(path) as data:
                templates = BeatTemplates(**{name: data[name] for name in BeatTemplates.__dataclass_fields__})
        except (OSError, KeyError, ValueError):
            templates = None  # a damaged cache is rebuilt, not trusted
    if templates is None:
        templates = _build_templates()
        atomic_savez(path, **templates.__dict__)
    _TEMPLATES[cache_dir] = templates
    return templates

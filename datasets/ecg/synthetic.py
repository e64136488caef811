"""Synthetic 12-lead ECGs with controlled labels, for tests and the demo model.

How a record is made:
  1. Beat templates. ``neurokit2.ecg_simulate(method="multileads")`` (the ECGSYN dynamical model
     with per-lead wave amplitudes) is run a handful of times at 60 bpm with perturbed wave
     parameters (angles, amplitudes, widths). Each run's median beat per lead is cut into three
     components — P wave, QRS, ST-T — with smooth cross-fades. Running ECGSYN takes about a
     second per 10 s, so the templates are made once and cached to disk
     (``$PREREAD_CACHE`` or ``~/.cache/preread``, or the ``cache_dir`` given).
  2. Rhythm. R-peak times come from the label: sinus rhythms at a drawn rate with mild
     respiratory sinus arrhythmia; atrial fibrillation with irregularly irregular RR intervals
     (or atrial flutter with variable block); premature ventricular beats replace a sinus beat
     earlier than due, leaving a compensatory pause.
  3. Beats. Each beat places the template components on a time axis: the P wave at the PR
     interval before the QRS, the QRS (stretched for wide-QRS records), the ST-T segment anchored
     at the J point and time-scaled with the RR interval (QT shortens as the rate rises, Bazett).
     Label-specific waves are added in millivolts: ST elevation over a contiguous lead territory
     with reciprocal depression, bundle-branch-block terminal waves, fibrillatory or flutter waves,
     wide premature ventricular complexes with discordant T waves.
  4. Noise. Baseline wander (respiration and slower drift), mains hum (50/60 Hz), EMG-like broadband
     noise, per-lead electrode gain.

Label semantics (our codes, see ``datasets.vocabulary.ecg_labels``): exactly one rhythm label — NORM (sinus,
60–100 bpm), STACH, SBRAD or AF — plus any of STE, WQRS, PREM. Rates are drawn a few bpm away
from the 60/100 bpm boundaries so that a label is never ambiguous.

Caveat: ECGSYN's per-lead templates are scaled independently, so limb leads do not satisfy
Einthoven's law (III = II − I) exactly as real recordings do. Good enough to exercise the
whole pipeline and train a demo model; never evidence of clinical performance.

This module must not import ``models`` (datasets/ sits below models/): the label codes are
repeated here as strings and a test checks they match ``ECG_LABEL_CODES``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps
from tqdm.auto import tqdm

from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.transforms import TARGET_SAMPLING_RATE, WINDOW_SECONDS, preprocess_signals

# Bump whenever generated signals change: it keys the on-disk caches.
GENERATOR_VERSION = 1

# Same order as datasets.vocabulary.ecg_labels.ECG_LABEL_CODES (checked by tests/datasets/test_ecg_synthetic.py).
LABEL_CODES: tuple[str, ...] = ("NORM", "AF", "STACH", "SBRAD", "STE", "WQRS", "PREM")
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

# Label mix of make_synthetic_ecg_dataset: rhythm probabilities, then independent morphology labels.
RHYTHM_PROBABILITIES = {"NORM": 0.4, "STACH": 0.2, "SBRAD": 0.2, "AF": 0.2}
MORPHOLOGY_PROBABILITIES = {"STE": 0.25, "WQRS": 0.2, "PREM": 0.2}

_TEMPLATE_RATE = 500  # Hz; templates are functions of time, rendered at any output rate
_TEMPLATE_START_S, _TEMPLATE_END_S = -0.5, 0.6  # relative to the R peak
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
_J_POINT_S = 0.085
_MAX_P_MV, _MAX_T_MV = 0.22, 0.7

# Typical peak amplitude per lead (mV) that each template lead is scaled to; ECGSYN rescales each
# lead to the same range, which would make aVL as large as V3.
_LEAD_PEAK_MV = dict(zip(STANDARD_LEADS, (0.8, 1.1, 0.6, 0.7, 0.5, 0.8, 0.9, 1.4, 1.5, 1.6, 1.4, 1.1)))


# Approximate lead axes as unit vectors (x: patient's left, y: inferior, z: anterior); used to
# project a cardiac vector (premature ventricular complexes) onto the 12 leads coherently.
def _lead_axes() -> np.ndarray:
    frontal = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    horizontal = {"V1": 115, "V2": 95, "V3": 75, "V4": 60, "V5": 30, "V6": 0}
    axes = []
    for lead in STANDARD_LEADS:
        if lead in frontal:
            a = np.deg2rad(frontal[lead])
            axes.append((np.cos(a), np.sin(a), 0.0))
        else:
            a = np.deg2rad(horizontal[lead])
            axes.append((np.cos(a), 0.15, np.sin(a)))
    axes = np.asarray(axes)
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


_LEAD_AXES = _lead_axes()

# ST deviation per lead for each infarct territory (1 = full elevation, negative = reciprocal
# depression), leads in STANDARD_LEADS order: I II III aVR aVL aVF V1 V2 V3 V4 V5 V6.
_ST_TERRITORIES: dict[str, np.ndarray] = {
    "inferior": np.array([-0.2, 0.9, 1.0, -0.4, -0.7, 1.0, 0.0, -0.3, -0.2, 0.0, 0.1, 0.2]),
    "anterior": np.array([0.2, -0.2, -0.4, -0.1, 0.3, -0.3, 0.6, 1.0, 1.0, 0.9, 0.4, 0.1]),
    "lateral": np.array([0.8, 0.1, -0.7, -0.4, 1.0, -0.4, -0.2, 0.0, 0.1, 0.3, 0.9, 0.9]),
}
# Fibrillatory waves are largest in V1 and the inferior leads; flutter waves are negative
# sawtooth in II/III/aVF and positive in V1.
_F_WAVE_WEIGHTS = np.array([0.1, 0.5, 0.6, -0.4, -0.2, 0.6, 1.0, 0.7, 0.4, 0.25, 0.15, 0.1])
_FLUTTER_WEIGHTS = np.array([0.1, -0.8, -1.0, 0.5, 0.2, -0.9, 0.7, 0.4, 0.2, 0.1, 0.1, 0.1])

_LEAD_INDEX = {lead: i for i, lead in enumerate(STANDARD_LEADS)}


def _leads(*names: str) -> list[int]:
    return [_LEAD_INDEX[n] for n in names]


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


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


def default_cache_dir() -> Path:
    return Path(os.environ.get("PREREAD_CACHE", Path.home() / ".cache" / "preread"))


def _template_times() -> np.ndarray:
    n = int(round((_TEMPLATE_END_S - _TEMPLATE_START_S) * _TEMPLATE_RATE)) + 1
    return _TEMPLATE_START_S + np.arange(n) / _TEMPLATE_RATE


def _smooth_step(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before ``start``, 1 after ``end``, raised-cosine in between."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _simulate_template_variant(variant: int) -> np.ndarray:
    """One ECGSYN run at 60 bpm with perturbed wave parameters → median beat [12, samples], mV."""
    import neurokit2 as nk  # heavy import, needed only when the template cache is cold  # noqa: PLC0415

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
            sampling_rate=_TEMPLATE_RATE,
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
    peaks, _ = sps.find_peaks(slope, distance=int(0.6 * _TEMPLATE_RATE), height=0.5 * slope.max())
    times = _template_times()
    offsets = np.round(times * _TEMPLATE_RATE).astype(int)
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
    pre = (times >= _TEMPLATE_START_S) & (times < _TEMPLATE_START_S + 0.08)
    post = times > _TEMPLATE_END_S - 0.08
    pre_level, post_level = beat[:, pre].mean(axis=1), beat[:, post].mean(axis=1)
    pre_t, post_t = times[pre].mean(), times[post].mean()
    slope_per_s = (post_level - pre_level) / (post_t - pre_t)
    beat = beat - (pre_level[:, None] + slope_per_s[:, None] * (times - pre_t)[None, :])
    taper = _smooth_step(times, _TEMPLATE_START_S, _TEMPLATE_START_S + 0.04) * (
        1.0 - _smooth_step(times, _TEMPLATE_END_S - 0.04, _TEMPLATE_END_S)
    )
    beat = beat * taper
    peak_mv = np.array([_LEAD_PEAK_MV[lead] for lead in STANDARD_LEADS])
    return beat * (peak_mv / np.abs(beat).max(axis=1))[:, None]


def _split_components(beat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    times = _template_times()
    to_qrs = _smooth_step(times, *_P_QRS_FADE)
    to_st = _smooth_step(times, *_QRS_ST_FADE)
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
    qrs_ms = (above[-1] - above[0]) / _TEMPLATE_RATE * 1000.0
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
        _atomic_savez(path, **templates.__dict__)
    _TEMPLATES[cache_dir] = templates
    return templates


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an npz next to ``path`` and rename it in place: readers never see half a file,
    and concurrent writers (parallel test runs) just race to the same content."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache location must not stop generation
        warnings.warn(f"could not write cache {path}: {exc}")  # noqa: B028


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


class _Canvas:
    """A [12, n] signal buffer with a margin either side, addressed in seconds from record start."""

    def __init__(self, sampling_rate: float, duration_s: float, margin_s: float = 1.5):
        self.rate = float(sampling_rate)
        self.margin = int(round(margin_s * self.rate))
        self.n_out = int(round(duration_s * self.rate))
        self.data = np.zeros((len(STANDARD_LEADS), self.n_out + 2 * self.margin))

    def _span(self, t_lo: float, t_hi: float) -> tuple[int, int]:
        n0 = max(0, int(np.ceil(t_lo * self.rate)) + self.margin)
        n1 = min(self.data.shape[1], int(np.floor(t_hi * self.rate)) + self.margin + 1)
        return n0, n1

    def _times(self, n0: int, n1: int) -> np.ndarray:
        return (np.arange(n0, n1) - self.margin) / self.rate

    def place(
        self, component: np.ndarray, anchor_template_s: float, anchor_s: float, scale: float, gains: np.ndarray
    ) -> None:
        """Add a template component so that template time ``anchor_template_s`` lands at
        ``anchor_s``, stretched in time by ``scale``, multiplied per lead by ``gains``."""
        t_lo = anchor_s + (_TEMPLATE_START_S - anchor_template_s) * scale
        t_hi = anchor_s + (_TEMPLATE_END_S - anchor_template_s) * scale
        n0, n1 = self._span(t_lo, t_hi)
        if n1 <= n0:
            return
        u = anchor_template_s + (self._times(n0, n1) - anchor_s) / scale
        position = (u - _TEMPLATE_START_S) * _TEMPLATE_RATE
        index = np.clip(np.floor(position).astype(int), 0, component.shape[1] - 2)
        frac = np.clip(position - index, 0.0, 1.0)
        values = component[:, index] * (1.0 - frac) + component[:, index + 1] * frac
        self.data[:, n0:n1] += gains[:, None] * values

    def gaussian(self, amplitudes: np.ndarray, center_s: float, sigma_s: float) -> None:
        """Add a Gaussian wave with per-lead amplitudes (mV)."""
        n0, n1 = self._span(center_s - 4 * sigma_s, center_s + 4 * sigma_s)
        if n1 <= n0:
            return
        shape = np.exp(-0.5 * ((self._times(n0, n1) - center_s) / sigma_s) ** 2)
        self.data[:, n0:n1] += amplitudes[:, None] * shape[None, :]

    def profile(self, amplitudes: np.ndarray, t_lo: float, t_hi: float, fn) -> None:
        n0, n1 = self._span(t_lo, t_hi)
        if n1 > n0:
            self.data[:, n0:n1] += amplitudes[:, None] * fn(self._times(n0, n1))[None, :]

    def everywhere(self, waves: np.ndarray) -> None:
        """Add a full-length [12, n_out] signal (noise, atrial activity) to the visible window."""
        self.data[:, self.margin : self.margin + self.n_out] += waves

    def output(self) -> np.ndarray:
        return self.data[:, self.margin : self.margin + self.n_out]

    def times(self) -> np.ndarray:
        return np.arange(self.n_out) / self.rate


@dataclass
class _Beat:
    r_s: float  # time of the R peak (or of the complex's centre for ectopic beats)
    rr_s: float  # the RR interval that preceded it (sets ST-T duration)
    sinus_p: bool  # a sinus P wave precedes it
    ventricular: bool = False


def _sinus_beats(
    rng: np.random.Generator, heart_rate: float, duration_s: float, rsa: float, jitter: float
) -> list[_Beat]:
    rr_mean = 60.0 / heart_rate
    resp_hz, resp_phase = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    t = -rng.uniform(0.0, rr_mean) - 0.5
    beats = []
    while t < duration_s + 1.0:
        rr = rr_mean * (1.0 + rsa * np.sin(2 * np.pi * resp_hz * t + resp_phase) + jitter * rng.standard_normal())
        t += rr
        beats.append(_Beat(t, rr, sinus_p=True))
    return beats


def _fibrillation_beats(rng: np.random.Generator, heart_rate: float, duration_s: float) -> list[_Beat]:
    """Irregularly irregular: independent log-normal RR intervals around the mean."""
    rr_mean, spread = 60.0 / heart_rate, rng.uniform(0.15, 0.3)
    t = -rng.uniform(0.0, rr_mean) - 0.5
    beats = []
    while t < duration_s + 1.0:
        rr = float(np.clip(rr_mean * rng.lognormal(-0.5 * spread**2, spread), 0.3, 2.2))
        t += rr
        beats.append(_Beat(t, rr, sinus_p=False))
    return beats


def _flutter_beats(rng: np.random.Generator, flutter_hz: float, phase_s: float, duration_s: float) -> list[_Beat]:
    """Atrial flutter with variable AV block: each QRS follows the 2nd, 3rd or 4th flutter wave."""
    cycle = 1.0 / flutter_hz
    av_delay = rng.uniform(0.18, 0.26)
    t_wave = phase_s - 2 * cycle
    beats, last_r = [], None
    while t_wave < duration_s + 1.0:
        t_wave += cycle * rng.choice([2, 3, 4], p=[0.45, 0.3, 0.25])
        r = t_wave + av_delay
        beats.append(_Beat(r, (r - last_r) if last_r is not None else 2 * cycle, sinus_p=False))
        last_r = r
    return beats


def _insert_premature_beats(rng: np.random.Generator, beats: list[_Beat], duration_s: float) -> int:
    """Replace 1–3 beats with premature ventricular complexes. The PVC comes at 50–70% of the RR
    interval; the following beat keeps its time, so in sinus rhythm the pause is compensatory
    (PVC-to-next = 2 RR − coupling)."""
    wanted = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    candidates = [
        i for i in range(1, len(beats) - 1) if 0.4 < beats[i - 1].r_s + 0.5 * beats[i].rr_s < duration_s - 0.4
    ]
    rng.shuffle(candidates)
    chosen: list[int] = []
    for i in candidates:
        if len(chosen) == wanted:
            break
        if all(abs(i - j) > 1 for j in chosen):
            chosen.append(i)
    for i in chosen:
        coupling = beats[i].rr_s * rng.uniform(0.5, 0.7)
        beats[i] = _Beat(beats[i - 1].r_s + coupling, coupling, sinus_p=False, ventricular=True)
    return len(chosen)


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _noise(rng: np.random.Generator, canvas: _Canvas) -> np.ndarray:
    t = canvas.times()
    n_leads = len(STANDARD_LEADS)
    # Baseline wander: respiration shared by all leads plus slow electrode drift per lead.
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    wander = rng.uniform(0.0, 0.15, size=(n_leads, 1)) * resp[None, :]
    for _ in range(2):
        freq = rng.uniform(0.03, 0.15)
        phase = rng.uniform(0, 2 * np.pi, size=(n_leads, 1))
        wander += rng.uniform(0.0, 0.25, size=(n_leads, 1)) * np.sin(2 * np.pi * freq * t[None, :] + phase)
    # EMG: broadband, occasionally in a burst (patient moving / shivering).
    emg_level = rng.uniform(0.003, 0.03) * rng.uniform(0.5, 1.5, size=(n_leads, 1))
    emg = emg_level * rng.standard_normal((n_leads, t.size))
    if rng.random() < 0.3:
        start = rng.uniform(0, t[-1] - 1.0)
        burst = (t > start) & (t < start + rng.uniform(0.5, 2.0))
        emg[:, burst] *= rng.uniform(2.0, 4.0)
    noise = wander + emg
    # Mains hum from unshielded village-clinic wiring (50 or 60 Hz).
    if rng.random() < 0.6:
        mains_hz = 50.0 if rng.random() < 0.7 else 60.0
        hum = np.sin(2 * np.pi * mains_hz * t + rng.uniform(0, 2 * np.pi))
        noise += rng.uniform(0.005, 0.04) * rng.uniform(0.3, 1.0, size=(n_leads, 1)) * hum[None, :]
    return noise


def _fibrillatory_waves(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Coarse-to-fine f waves: 2–3 frequency-modulated 4–8 Hz oscillations, amplitude-modulated."""
    source = np.zeros_like(t)
    for _ in range(int(rng.integers(2, 4))):
        f0, depth, fm = rng.uniform(4.0, 8.0), rng.uniform(0.3, 1.0), rng.uniform(0.1, 0.4)
        phase = (
            2 * np.pi * np.cumsum(f0 + depth * np.sin(2 * np.pi * fm * t + rng.uniform(0, 6.3))) / (1.0 / (t[1] - t[0]))
        )
        envelope = 1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
        source += rng.uniform(0.3, 1.0) * envelope * np.sin(phase + rng.uniform(0, 6.3))
    source *= rng.uniform(0.03, 0.12) / (np.abs(source).max() + 1e-9)
    weights = _F_WAVE_WEIGHTS * rng.uniform(0.7, 1.3, size=_F_WAVE_WEIGHTS.size)
    return weights[:, None] * source[None, :]


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
    wanted = set(labels)
    unknown = wanted - set(LABEL_CODES)
    if unknown:
        raise ValueError(f"unknown label codes {sorted(unknown)}; known: {', '.join(LABEL_CODES)}")
    rhythms = wanted & set(RHYTHM_LABELS)
    if len(rhythms) > 1:
        raise ValueError(f"at most one rhythm label, got {sorted(rhythms)}")
    rhythm = rhythms.pop() if rhythms else "NORM"
    wanted.add(rhythm)

    templates = load_templates(cache_dir)
    canvas = _Canvas(sampling_rate, duration_s)
    n_leads = len(STANDARD_LEADS)
    params: dict[str, object] = {"rhythm": rhythm}

    # Rhythm → beat times.
    low, high = HEART_RATE_RANGES[rhythm]
    heart_rate = float(rng.uniform(low, high))
    flutter = False
    if rhythm == "AF":
        flutter = bool(rng.random() < 0.25)
        if flutter:
            flutter_hz = rng.uniform(240, 340) / 60.0
            flutter_phase = rng.uniform(0, 1.0 / flutter_hz)
            beats = _flutter_beats(rng, flutter_hz, flutter_phase, duration_s)
            params["flutter_rate_bpm"] = round(flutter_hz * 60.0, 1)
        else:
            beats = _fibrillation_beats(rng, heart_rate, duration_s)
    else:
        rsa = {"NORM": rng.uniform(0.0, 0.04), "STACH": rng.uniform(0.0, 0.015), "SBRAD": rng.uniform(0.0, 0.06)}[
            rhythm
        ]
        beats = _sinus_beats(rng, heart_rate, duration_s, rsa=rsa, jitter=0.006)
    params["heart_rate_bpm"] = round(heart_rate, 1) if not flutter else None
    params["atrial_flutter"] = flutter
    params["n_premature"] = _insert_premature_beats(rng, beats, duration_s) if "PREM" in wanted else 0

    # Morphology of this record: a blend of two template variants, per-lead gains.
    a, b = rng.choice(templates.n_variants, size=2, replace=False)
    mix = rng.uniform(0.0, 1.0)
    p_wave = (1 - mix) * templates.p_wave[a] + mix * templates.p_wave[b]
    qrs = (1 - mix) * templates.qrs[a] + mix * templates.qrs[b]
    st_t = (1 - mix) * templates.st_t[a] + mix * templates.st_t[b]
    p_center = (1 - mix) * templates.p_center_s[a] + mix * templates.p_center_s[b]
    template_qrs_s = ((1 - mix) * templates.qrs_ms[a] + mix * templates.qrs_ms[b]) / 1000.0
    lead_gain = rng.uniform(0.7, 1.3, size=n_leads) * rng.uniform(0.7, 1.4)
    qrs_gain, st_gain, p_gain = lead_gain.copy(), lead_gain * rng.uniform(0.7, 1.2), lead_gain * rng.uniform(0.6, 1.2)

    # Conduction: QRS duration and bundle-branch-block shape.
    bbb = None
    if "WQRS" in wanted:
        qrs_s = rng.uniform(*WIDE_QRS_MS) / 1000.0
        bbb = "RBBB" if rng.random() < 0.5 else "LBBB"
        if bbb == "RBBB":
            # Right ventricle activates late: normal initial QRS, terminal R' in V1-V2 and broad S
            # in the lateral leads; secondary T inversion in V1-V2.
            qrs_scale = rng.uniform(1.0, 1.15)
            st_gain[_leads("V1", "V2")] *= np.array([-0.6, -0.2])
        else:
            # Whole ventricle activates slowly from the left: broad QS in V1-V3, broad notched R
            # laterally, T waves discordant to the QRS in the lateral leads.
            qrs_scale = qrs_s / template_qrs_s
            qrs_gain[_leads("V1", "V2", "V3", "I", "aVL", "V5", "V6")] *= 0.3
            st_gain[_leads("I", "aVL", "V5", "V6")] *= -0.6
    else:
        qrs_s = rng.uniform(*NORMAL_QRS_MS) / 1000.0
        qrs_scale = qrs_s / template_qrs_s
    params["qrs_ms"] = round(qrs_s * 1000.0, 1)
    params["bundle_branch_block"] = bbb
    bbb_amplitude = rng.uniform(0.4, 0.9)
    lbbb_amplitude = rng.uniform(0.8, 1.6)

    # Ischaemia: ST elevation over a territory with reciprocal depression.
    st_deviation = None
    if "STE" in wanted:
        territory = str(rng.choice(sorted(_ST_TERRITORIES)))
        elevation = rng.uniform(*ST_ELEVATION_MV)
        st_deviation = elevation * _ST_TERRITORIES[territory]
        params["st_territory"], params["st_elevation_mv"] = territory, round(float(elevation), 3)

    # PR interval shortens as the rate rises.
    pr_factor = rng.uniform(0.8, 1.0) * (1.0 - 0.25 * np.clip((heart_rate - 60.0) / 100.0, 0.0, 1.0))
    pvc_main, pvc_late = _unit_vector(rng), _unit_vector(rng)
    pvc_width = rng.uniform(0.13, 0.18)
    pvc_amplitude = rng.uniform(0.9, 1.8)

    for beat in beats:
        # QT ∝ √RR (Bazett): stretch the ST-T segment, not the QRS.
        st_scale = float(np.clip(np.sqrt(max(beat.rr_s, 0.25)), 0.6, 1.25))
        if beat.ventricular:
            # Premature ventricular complex: wide, bizarre, no P wave, discordant T wave.
            main = pvc_amplitude * (_LEAD_AXES @ pvc_main)
            late = 0.4 * pvc_amplitude * (_LEAD_AXES @ pvc_late)
            canvas.gaussian(main, beat.r_s, pvc_width / 5)
            canvas.gaussian(late, beat.r_s + pvc_width / 4, pvc_width / 6)
            canvas.gaussian(-0.35 * main, beat.r_s + pvc_width / 2 + 0.17 * st_scale, 0.06 * st_scale)
            continue
        if beat.sinus_p:
            canvas.place(p_wave, p_center, beat.r_s + p_center * pr_factor, 0.85, p_gain)
        canvas.place(qrs, 0.0, beat.r_s, qrs_scale, qrs_gain)
        j_point = beat.r_s + _J_POINT_S * qrs_scale
        if bbb == "RBBB":
            onset = beat.r_s - 0.5 * template_qrs_s * qrs_scale
            center, sigma = onset + qrs_s - 0.04, 0.018
            terminal = np.zeros(n_leads)
            terminal[_leads("V1", "V2", "aVR")] = bbb_amplitude * np.array([1.0, 0.7, 0.4])
            terminal[_leads("I", "aVL", "V5", "V6")] = -0.4 * bbb_amplitude * np.array([0.8, 0.6, 0.9, 1.0])
            canvas.gaussian(terminal, center, sigma)
            j_point = max(j_point, onset + qrs_s)
        elif bbb == "LBBB":
            sigma = qrs_s / 6
            qs = np.zeros(n_leads)
            qs[_leads("V1", "V2", "V3", "aVR")] = -lbbb_amplitude * np.array([0.9, 1.0, 0.7, 0.4])
            canvas.gaussian(qs, beat.r_s, sigma * 1.2)
            notched = np.zeros(n_leads)
            notched[_leads("I", "aVL", "V5", "V6")] = 0.7 * lbbb_amplitude * np.array([0.8, 0.7, 0.9, 1.0])
            canvas.gaussian(notched, beat.r_s - qrs_s / 6, sigma * 0.8)
            canvas.gaussian(0.9 * notched, beat.r_s + qrs_s / 6, sigma * 0.8)
        canvas.place(st_t, _J_POINT_S, j_point, st_scale, st_gain)
        if st_deviation is not None:
            # Elevation rises at the J point, holds through the ST segment and merges into the
            # T wave (a "coved" / convex STEMI shape), then returns to baseline at the T wave's end.
            plateau, fall = 0.17 * st_scale, 0.035 * st_scale
            canvas.profile(
                st_deviation,
                j_point - 0.02,
                j_point + plateau + 5 * fall,
                lambda tt, j=j_point, p=plateau, f=fall: (
                    0.5 * (1 + np.tanh((tt - j - 0.01) / 0.006)) * 0.5 * (1 - np.tanh((tt - j - p) / f))
                ),
            )

    t = canvas.times()
    if rhythm == "AF":
        if flutter:
            flutter_hz = float(params["flutter_rate_bpm"]) / 60.0
            saw = sps.sawtooth(2 * np.pi * flutter_hz * (t - flutter_phase), width=0.8)
            weights = _FLUTTER_WEIGHTS * rng.uniform(0.1, 0.25) * rng.uniform(0.7, 1.3, size=n_leads)
            canvas.everywhere(weights[:, None] * saw[None, :])
        else:
            canvas.everywhere(_fibrillatory_waves(rng, t))
    canvas.everywhere(_noise(rng, canvas))

    ordered = [code for code in LABEL_CODES if code in wanted]
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
        labels=ordered,
    )


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def sample_label_set(rng: np.random.Generator) -> set[str]:
    """A label combination from the dataset mix: one rhythm, then each morphology label independently."""
    rhythm = str(rng.choice(list(RHYTHM_PROBABILITIES), p=list(RHYTHM_PROBABILITIES.values())))
    return {rhythm} | {code for code, p in MORPHOLOGY_PROBABILITIES.items() if rng.random() < p}


def labels_to_vector(labels: list[str] | set[str]) -> np.ndarray:
    return np.array([code in labels for code in LABEL_CODES], dtype=np.float32)


def dataset_cache_path(cache_dir: Path, n: int, seed: int) -> Path:
    return Path(cache_dir) / f"synthetic-ecg-n{n}-seed{seed}-v{GENERATOR_VERSION}.npz"


def make_synthetic_ecg_dataset(
    n: int, seed: int, cache_dir: Path | str | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled synthetic records, preprocessed exactly as at serving time.

    Returns ``(X, Y)``: X float32 [n, 12, 5000] (``preprocess_signals`` output), Y float32
    [n, len(LABEL_CODES)] multi-hot in LABEL_CODES order. Deterministic in (n, seed,
    GENERATOR_VERSION): record i uses its own child seed, so the first k records of a larger set
    equal a set of k. With ``cache_dir`` the arrays are cached there as npz (and so are the
    beat templates).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    path = dataset_cache_path(Path(cache_dir), n, seed) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as data:
                X, Y = data["X"], data["Y"]
            if X.shape == (n, len(STANDARD_LEADS), int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)) and Y.shape == (
                n,
                len(LABEL_CODES),
            ):
                return X, Y
        except (OSError, KeyError, ValueError):
            pass  # damaged or foreign file: regenerate
    templates_dir = Path(cache_dir) if cache_dir is not None else None
    load_templates(templates_dir)
    X = np.empty((n, len(STANDARD_LEADS), int(TARGET_SAMPLING_RATE * WINDOW_SECONDS)), dtype=np.float32)
    Y = np.empty((n, len(LABEL_CODES)), dtype=np.float32)
    children = np.random.SeedSequence([seed, GENERATOR_VERSION]).spawn(n)
    for i in tqdm(range(n), desc="synthetic ECGs", disable=not progress, unit="rec", mininterval=1.0):
        rng = np.random.default_rng(children[i])
        record = simulate_ecg(sample_label_set(rng), rng, cache_dir=templates_dir)
        X[i] = preprocess_signals(record.signals, record.sampling_rate)
        Y[i] = labels_to_vector(record.labels)
    if path is not None:
        _atomic_savez(path, X=X, Y=Y)
    return X, Y

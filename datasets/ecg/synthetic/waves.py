"""The waves the synthetic ECG adds beside the beat templates, with where they show in the 12 leads:
lead axes for a cardiac vector (premature ventricular complexes), ST-elevation territories,
fibrillatory and flutter waves, and recording noise (baseline wander, EMG, mains hum)."""

from __future__ import annotations

import numpy as np

from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.synthetic.canvas import Canvas


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


LEAD_AXES = _lead_axes()

# ST deviation per lead for each infarct territory (1 = full elevation, negative = reciprocal
# depression), leads in STANDARD_LEADS order: I II III aVR aVL aVF V1 V2 V3 V4 V5 V6.
ST_TERRITORIES: dict[str, np.ndarray] = {
    "inferior": np.array([-0.2, 0.9, 1.0, -0.4, -0.7, 1.0, 0.0, -0.3, -0.2, 0.0, 0.1, 0.2]),
    "anterior": np.array([0.2, -0.2, -0.4, -0.1, 0.3, -0.3, 0.6, 1.0, 1.0, 0.9, 0.4, 0.1]),
    "lateral": np.array([0.8, 0.1, -0.7, -0.4, 1.0, -0.4, -0.2, 0.0, 0.1, 0.3, 0.9, 0.9]),
}
# Fibrillatory waves are largest in V1 and the inferior leads; flutter waves are negative
# sawtooth in II/III/aVF and positive in V1.
F_WAVE_WEIGHTS = np.array([0.1, 0.5, 0.6, -0.4, -0.2, 0.6, 1.0, 0.7, 0.4, 0.25, 0.15, 0.1])
FLUTTER_WEIGHTS = np.array([0.1, -0.8, -1.0, 0.5, 0.2, -0.9, 0.7, 0.4, 0.2, 0.1, 0.1, 0.1])

_LEAD_INDEX = {lead: i for i, lead in enumerate(STANDARD_LEADS)}


def lead_indices(*names: str) -> list[int]:
    """Rows of ``names`` in STANDARD_LEADS order."""
    return [_LEAD_INDEX[n] for n in names]


def unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A random direction in 3-D (a cardiac vector)."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def recording_noise(rng: np.random.Generator, canvas: Canvas) -> np.ndarray:
    """[12, n] of baseline wander, EMG (sometimes a burst) and, often, mains hum, in mV."""
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


def fibrillatory_waves(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
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
    weights = F_WAVE_WEIGHTS * rng.uniform(0.7, 1.3, size=F_WAVE_WEIGHTS.size)
    return weights[:, None] * source[None, :]

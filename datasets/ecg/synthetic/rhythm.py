"""Beat times of the synthetic ECG's rhythms: sinus with respiratory arrhythmia, atrial fibrillation
(irregularly irregular), atrial flutter with variable block, and premature ventricular complexes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Beat:
    """One ventricular complex to draw."""

    r_s: float  # time of the R peak (or of the complex's centre for ectopic beats)
    rr_s: float  # the RR interval that preceded it (sets ST-T duration)
    sinus_p: bool  # a sinus P wave precedes it
    ventricular: bool = False


def sinus_beats(
    rng: np.random.Generator, heart_rate: float, duration_s: float, rsa: float, jitter: float
) -> list[Beat]:
    """Sinus rhythm at ``heart_rate`` with respiratory sinus arrhythmia (relative depth ``rsa``) and jitter."""
    rr_mean = 60.0 / heart_rate
    resp_hz, resp_phase = rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    t = -rng.uniform(0.0, rr_mean) - 0.5
    beats = []
    while t < duration_s + 1.0:
        rr = rr_mean * (1.0 + rsa * np.sin(2 * np.pi * resp_hz * t + resp_phase) + jitter * rng.standard_normal())
        t += rr
        beats.append(Beat(t, rr, sinus_p=True))
    return beats


def fibrillation_beats(rng: np.random.Generator, heart_rate: float, duration_s: float) -> list[Beat]:
    """Irregularly irregular: independent log-normal RR intervals around the mean."""
    rr_mean, spread = 60.0 / heart_rate, rng.uniform(0.15, 0.3)
    t = -rng.uniform(0.0, rr_mean) - 0.5
    beats = []
    while t < duration_s + 1.0:
        rr = float(np.clip(rr_mean * rng.lognormal(-0.5 * spread**2, spread), 0.3, 2.2))
        t += rr
        beats.append(Beat(t, rr, sinus_p=False))
    return beats


def flutter_beats(rng: np.random.Generator, flutter_hz: float, phase_s: float, duration_s: float) -> list[Beat]:
    """Atrial flutter with variable AV block: each QRS follows the 2nd, 3rd or 4th flutter wave."""
    cycle = 1.0 / flutter_hz
    av_delay = rng.uniform(0.18, 0.26)
    t_wave = phase_s - 2 * cycle
    beats, last_r = [], None
    while t_wave < duration_s + 1.0:
        t_wave += cycle * rng.choice([2, 3, 4], p=[0.45, 0.3, 0.25])
        r = t_wave + av_delay
        beats.append(Beat(r, (r - last_r) if last_r is not None else 2 * cycle, sinus_p=False))
        last_r = r
    return beats


def insert_premature_beats(rng: np.random.Generator, beats: list[Beat], duration_s: float) -> int:
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
        beats[i] = Beat(beats[i - 1].r_s + coupling, coupling, sinus_p=False, ventricular=True)
    return len(chosen)

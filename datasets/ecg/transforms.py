"""ECG transforms: small, composable, dict-based (in the spirit of MONAI's dictionary transforms).

Each transform takes and returns a dict with at least ``signals`` (float array, leads × samples, mV)
and ``sampling_rate`` (Hz). ``ecg_preprocess()`` is *the* pipeline the networks are trained and served
with; both training/ and serving/ call it, never a copy of it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
from scipy import signal as sps

EcgDict = dict[str, Any]

TARGET_SAMPLING_RATE = 500  # Hz: the PTB-XL high-rate / CinC 2021 rate
WINDOW_SECONDS = 10.0


class Compose:
    def __init__(self, transforms: Sequence[Callable[[EcgDict], EcgDict]]):
        self.transforms = list(transforms)

    def __call__(self, data: EcgDict) -> EcgDict:
        for transform in self.transforms:
            data = transform(data)
        return data


class Resample:
    """Polyphase resampling to ``target_rate`` (anti-aliased; exact for rational rate ratios)."""

    def __init__(self, target_rate: float = TARGET_SAMPLING_RATE):
        self.target_rate = float(target_rate)

    def __call__(self, data: EcgDict) -> EcgDict:
        rate = float(data["sampling_rate"])
        if abs(rate - self.target_rate) < 1e-6:
            return data
        ratio = Fraction(self.target_rate / rate).limit_denominator(1000)
        signals = sps.resample_poly(data["signals"], ratio.numerator, ratio.denominator, axis=-1)
        return {**data, "signals": signals, "sampling_rate": self.target_rate}


class BandPass:
    """Zero-phase Butterworth band-pass. The high-pass edge removes baseline wander,
    the low-pass edge mains hum and EMG noise above the diagnostic band."""

    def __init__(self, low_hz: float = 0.5, high_hz: float = 45.0, order: int = 3):
        self.low_hz, self.high_hz, self.order = low_hz, high_hz, order
        self._cache: dict[float, np.ndarray] = {}

    def _sos(self, rate: float) -> np.ndarray:
        if rate not in self._cache:
            high = min(self.high_hz, 0.45 * rate)
            self._cache[rate] = sps.butter(self.order, [self.low_hz, high], btype="bandpass", fs=rate, output="sos")
        return self._cache[rate]

    def __call__(self, data: EcgDict) -> EcgDict:
        signals = sps.sosfiltfilt(self._sos(float(data["sampling_rate"])), data["signals"], axis=-1)
        return {**data, "signals": signals}


class RemoveBaseline:
    """Subtract each lead's median so a DC offset left by the filter edge does not bias the net."""

    def __call__(self, data: EcgDict) -> EcgDict:
        signals = data["signals"]
        return {**data, "signals": signals - np.median(signals, axis=-1, keepdims=True)}


class FixedWindow:
    """Cut or pad to exactly ``seconds``. ``mode='center'`` for reading (deterministic),
    ``'random'`` for training augmentation. Short records are zero-padded at the end."""

    def __init__(self, seconds: float = WINDOW_SECONDS, mode: str = "center", rng: np.random.Generator | None = None):
        if mode not in ("center", "start", "random"):
            raise ValueError(f"unknown window mode {mode!r}")
        self.seconds, self.mode = seconds, mode
        self.rng = rng or np.random.default_rng()

    def __call__(self, data: EcgDict) -> EcgDict:
        signals = data["signals"]
        length = int(round(self.seconds * float(data["sampling_rate"])))
        n = signals.shape[-1]
        if n >= length:
            if self.mode == "center":
                start = (n - length) // 2
            elif self.mode == "start":
                start = 0
            else:
                start = int(self.rng.integers(0, n - length + 1))
            signals = signals[..., start : start + length]
        else:
            pad = [(0, 0)] * (signals.ndim - 1) + [(0, length - n)]
            signals = np.pad(signals, pad)
        return {**data, "signals": signals}


class Normalize:
    """Fixed amplitude scaling (not per-record z-scores): absolute amplitude carries diagnosis
    (ST elevation, voltage criteria), so the net sees millivolts / ``scale_mv``, clipped."""

    def __init__(self, scale_mv: float = 1.0, clip: float = 10.0):
        self.scale_mv, self.clip = scale_mv, clip

    def __call__(self, data: EcgDict) -> EcgDict:
        signals = np.clip(data["signals"] / self.scale_mv, -self.clip, self.clip).astype(np.float32)
        return {**data, "signals": signals}


def ecg_preprocess(window_mode: str = "center", rng: np.random.Generator | None = None) -> Compose:
    """The network input pipeline: 500 Hz, 0.5–45 Hz, median-centred, 10 s, float32 mV."""
    return Compose([
        Resample(TARGET_SAMPLING_RATE),
        BandPass(),
        RemoveBaseline(),
        FixedWindow(WINDOW_SECONDS, mode=window_mode, rng=rng),
        Normalize(),
    ])


_READING_PIPELINE = ecg_preprocess("center")


def preprocess_signals(signals: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Standard-lead-ordered signals (12 × n, mV) → network input (12 × 5000, float32)."""
    return _READING_PIPELINE({"signals": np.asarray(signals, dtype=np.float64), "sampling_rate": sampling_rate})["signals"]

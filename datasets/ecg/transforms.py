"""ECG transforms in MONAI's pairing: an array transform (``monai.transforms.Transform``) that works on
one signal array, and its dictionary form (``monai.transforms.MapTransform``, suffix ``d``) that applies
it to the keys of a sample dict, reading and updating the sampling rate kept under ``rate_key``.

Arrays are leads × samples in mV. ``ecg_preprocess()`` is *the* pipeline the networks are trained and
served with (a ``monai.transforms.Compose`` of the dict forms); training/ and serving/ both call it
(or ``preprocess_signals``, its one-array shortcut), never a copy of it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from monai.transforms import Compose, MapTransform, Transform
from scipy import signal as sps

__all__ = [
    "TARGET_SAMPLING_RATE",
    "WINDOW_SECONDS",
    "BandPass",
    "BandPassd",
    "EcgDict",
    "FixedWindow",
    "FixedWindowd",
    "Normalize",
    "Normalized",
    "RemoveBaseline",
    "RemoveBaselined",
    "Resample",
    "Resampled",
    "ecg_preprocess",
    "preprocess_signals",
]

EcgDict = dict[str, Any]
KeysCollection = Sequence[Hashable] | Hashable

TARGET_SAMPLING_RATE = 500  # Hz: the PTB-XL high-rate / CinC 2021 rate
WINDOW_SECONDS = 10.0
SIGNALS, RATE = "signals", "sampling_rate"


# ----------------------------------------------------------------------------------------- arrays


class Resample(Transform):
    """Polyphase resampling to ``target_rate`` (anti-aliased; exact for rational rate ratios)."""

    def __init__(self, target_rate: float = TARGET_SAMPLING_RATE):
        self.target_rate = float(target_rate)

    def __call__(self, signals: np.ndarray, sampling_rate: float) -> np.ndarray:
        rate = float(sampling_rate)
        if abs(rate - self.target_rate) < 1e-6:
            return signals
        ratio = Fraction(self.target_rate / rate).limit_denominator(1000)
        return sps.resample_poly(signals, ratio.numerator, ratio.denominator, axis=-1)


class BandPass(Transform):
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

    def __call__(self, signals: np.ndarray, sampling_rate: float) -> np.ndarray:
        return sps.sosfiltfilt(self._sos(float(sampling_rate)), signals, axis=-1)


class RemoveBaseline(Transform):
    """Subtract each lead's median so a DC offset left by the filter edge does not bias the net."""

    def __call__(self, signals: np.ndarray) -> np.ndarray:
        return signals - np.median(signals, axis=-1, keepdims=True)


class FixedWindow(Transform):
    """Cut or pad to exactly ``seconds``. ``mode='center'`` for reading (deterministic),
    ``'random'`` for training augmentation. Short records are zero-padded at the end."""

    def __init__(self, seconds: float = WINDOW_SECONDS, mode: str = "center", rng: np.random.Generator | None = None):
        if mode not in ("center", "start", "random"):
            raise ValueError(f"unknown window mode {mode!r}")
        self.seconds, self.mode = seconds, mode
        self.rng = rng or np.random.default_rng()

    def __call__(self, signals: np.ndarray, sampling_rate: float) -> np.ndarray:
        length = round(self.seconds * float(sampling_rate))
        n = signals.shape[-1]
        if n < length:
            return np.pad(signals, [(0, 0)] * (signals.ndim - 1) + [(0, length - n)])
        if self.mode == "center":
            start = (n - length) // 2
        elif self.mode == "start":
            start = 0
        else:
            start = int(self.rng.integers(0, n - length + 1))
        return signals[..., start : start + length]


class Normalize(Transform):
    """Fixed amplitude scaling (not per-record z-scores): absolute amplitude carries diagnosis
    (ST elevation, voltage criteria), so the net sees millivolts / ``scale_mv``, clipped."""

    def __init__(self, scale_mv: float = 1.0, clip: float = 10.0):
        self.scale_mv, self.clip = scale_mv, clip

    def __call__(self, signals: np.ndarray) -> np.ndarray:
        return np.clip(signals / self.scale_mv, -self.clip, self.clip).astype(np.float32)


# ----------------------------------------------------------------------------------------- dicts


class _EcgMapTransform(MapTransform):
    """Applies ``self._array`` to each key; the rate-aware ones pass ``data[rate_key]`` along."""

    _array: Transform
    uses_rate = True

    def __init__(self, keys: KeysCollection = SIGNALS, rate_key: str = RATE, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.rate_key = rate_key

    def _apply(self, signals: np.ndarray, rate: float) -> np.ndarray:
        return self._array(signals, rate) if self.uses_rate else self._array(signals)

    def new_rate(self, rate: float) -> float:
        return rate

    def __call__(self, data: Mapping[Hashable, Any]) -> EcgDict:
        d = dict(data)
        rate = float(d[self.rate_key])
        for key in self.key_iterator(d):
            d[key] = self._apply(d[key], rate)
        d[self.rate_key] = self.new_rate(rate)
        return d


class Resampled(_EcgMapTransform):
    """Dictionary form of :class:`Resample`; sets ``data[rate_key]`` to the new rate."""

    def __init__(self, target_rate: float = TARGET_SAMPLING_RATE, **kwargs: Any):
        super().__init__(**kwargs)
        self.target_rate = float(target_rate)
        self._array = Resample(target_rate)

    def new_rate(self, rate: float) -> float:
        return self.target_rate


class BandPassd(_EcgMapTransform):
    """Dictionary form of :class:`BandPass`."""

    def __init__(self, low_hz: float = 0.5, high_hz: float = 45.0, order: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.low_hz, self.high_hz, self.order = low_hz, high_hz, order
        self._array = BandPass(low_hz, high_hz, order)


class RemoveBaselined(_EcgMapTransform):
    """Dictionary form of :class:`RemoveBaseline`."""

    uses_rate = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._array = RemoveBaseline()


class FixedWindowd(_EcgMapTransform):
    """Dictionary form of :class:`FixedWindow`."""

    def __init__(
        self,
        seconds: float = WINDOW_SECONDS,
        mode: str = "center",
        rng: np.random.Generator | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.seconds, self.mode = seconds, mode
        self._array = FixedWindow(seconds, mode, rng)


class Normalized(_EcgMapTransform):
    """Dictionary form of :class:`Normalize`."""

    uses_rate = False

    def __init__(self, scale_mv: float = 1.0, clip: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale_mv, self.clip = scale_mv, clip
        self._array = Normalize(scale_mv, clip)


def ecg_preprocess(window_mode: str = "center", rng: np.random.Generator | None = None) -> Compose:
    """The network input pipeline: 500 Hz, 0.5–45 Hz, median-centred, 10 s, float32 mV."""
    return Compose(
        [
            Resampled(TARGET_SAMPLING_RATE),
            BandPassd(),
            RemoveBaselined(),
            FixedWindowd(WINDOW_SECONDS, mode=window_mode, rng=rng),
            Normalized(),
        ]
    )


_READING_PIPELINE = ecg_preprocess("center")


def preprocess_signals(signals: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Standard-lead-ordered signals (12 × n, mV) → network input (12 × 5000, float32)."""
    return _READING_PIPELINE({SIGNALS: np.asarray(signals, dtype=np.float64), RATE: sampling_rate})[SIGNALS]

"""Training-time ECG augmentation: MONAI randomizable transforms on one preprocessed record.

Each transform takes a (leads, samples) array — a torch tensor on any device, or a NumPy array —
in the network's input units (mV after ``ecg_preprocess``); ours return the same kind, MONAI's
noise transform returns a tensor (trainers augment tensors).
They are small, composable and each fires with its own probability; their randomness comes from
MONAI's ``set_random_state``, so a trainer that seeds a composition per batch from its own
(checkpointed) generator replays exactly the same augmentation after a resume.

What they imitate, kept small enough that the diagnosis does not change:

- ``RandAmplitudeScale``: gain differences between carts and electrode contact (all leads alike,
  so voltage criteria and ST amplitudes move together, not against each other);
- ``RandBaselineWander``: the breathing-related drift the 0.5 Hz high-pass leaves behind;
- ``RandGaussianNoise`` (MONAI's): EMG / amplifier noise;
- ``RandTimeShift``: where in the recording the 10 s window starts (zero-filled at the edge).

None is applied at validation, test or serving time. No lead swaps or polarity flips: a swapped
lead is a different (mis-placed) ECG, not the same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, RandGaussianNoise, RandomizableTransform

from datasets.ecg.transforms import TARGET_SAMPLING_RATE


def _as_like(values: np.ndarray, reference: Any) -> Any:
    """``values`` as the type, dtype and device of ``reference`` (tensor or array)."""
    if isinstance(reference, np.ndarray):
        return values.astype(reference.dtype, copy=False)
    return torch.as_tensor(values, dtype=reference.dtype, device=reference.device)


class RandAmplitudeScale(RandomizableTransform):
    """Multiply the whole record by a gain drawn from [1 - scale, 1 + scale]."""

    def __init__(self, prob: float = 0.5, scale: float = 0.1):
        super().__init__(prob)
        self.scale = float(scale)
        self._gain = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._gain = float(self.R.uniform(1.0 - self.scale, 1.0 + self.scale))

    def __call__(self, signal: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        return signal * self._gain if self._do_transform else signal


class RandBaselineWander(RandomizableTransform):
    """Add a slow sinusoid (one frequency in ``freq_hz``, a random phase and an amplitude up to
    ``max_mv`` per lead) — respiration moves every lead's baseline, by different amounts."""

    def __init__(
        self,
        prob: float = 0.5,
        max_mv: float = 0.05,
        freq_hz: tuple[float, float] = (0.05, 0.5),
        sampling_rate: float = TARGET_SAMPLING_RATE,
    ):
        super().__init__(prob)
        self.max_mv, self.freq_hz, self.sampling_rate = float(max_mv), tuple(freq_hz), float(sampling_rate)
        self._params: tuple[float, np.ndarray, np.ndarray] | None = None

    def randomize(self, data: Any = None, leads: int = 12) -> None:
        super().randomize(None)
        if self._do_transform:
            self._params = (
                float(self.R.uniform(*self.freq_hz)),
                self.R.uniform(0.0, self.max_mv, leads),
                self.R.uniform(0.0, 2 * np.pi, leads),
            )

    def __call__(self, signal: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize(leads=signal.shape[0])
        if not self._do_transform or self._params is None:
            return signal
        freq, amplitude, phase = self._params
        t = np.arange(signal.shape[-1]) / self.sampling_rate
        wander = amplitude[:, None] * np.sin(2 * np.pi * freq * t[None, :] + phase[:, None])
        return signal + _as_like(wander, signal)


class RandTimeShift(RandomizableTransform):
    """Shift the record by up to ``max_shift_s`` either way; samples shifted in are zero (the
    baseline after preprocessing)."""

    def __init__(self, prob: float = 0.5, max_shift_s: float = 0.4, sampling_rate: float = TARGET_SAMPLING_RATE):
        super().__init__(prob)
        self.max_shift = int(round(max_shift_s * sampling_rate))
        self._shift = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._shift = int(self.R.randint(-self.max_shift, self.max_shift + 1)) if self.max_shift else 0

    def __call__(self, signal: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        shift = self._shift if self._do_transform else 0
        if shift == 0:
            return signal
        out = signal * 0  # zeros of the same kind, dtype and device
        if shift > 0:
            out[..., shift:] = signal[..., :-shift]
        else:
            out[..., :shift] = signal[..., -shift:]
        return out


def ecg_augment(
    probability: float = 0.5,
    amplitude_scale: float = 0.1,
    baseline_wander_mv: float = 0.05,
    noise_std_mv: float = 0.02,
    max_shift_s: float = 0.4,
    sampling_rate: float = TARGET_SAMPLING_RATE,
) -> Compose:
    """The training augmentation for preprocessed 12-lead records (a MONAI ``Compose``); a zero
    strength leaves its transform out."""
    transforms: list = []
    if amplitude_scale > 0:
        transforms.append(RandAmplitudeScale(probability, amplitude_scale))
    if baseline_wander_mv > 0:
        transforms.append(RandBaselineWander(probability, baseline_wander_mv, sampling_rate=sampling_rate))
    if noise_std_mv > 0:
        transforms.append(RandGaussianNoise(prob=probability, mean=0.0, std=noise_std_mv))
    if max_shift_s > 0:
        transforms.append(RandTimeShift(probability, max_shift_s, sampling_rate))
    return Compose(transforms)

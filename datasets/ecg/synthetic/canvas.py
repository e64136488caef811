"""The drawing surface of the synthetic ECG: a [12, n] buffer addressed in seconds, onto which template
components, Gaussian waves and whole-record signals (noise, atrial activity) are added."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.synthetic.templates import TEMPLATE_END_S, TEMPLATE_RATE, TEMPLATE_START_S


class Canvas:
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
        t_lo = anchor_s + (TEMPLATE_START_S - anchor_template_s) * scale
        t_hi = anchor_s + (TEMPLATE_END_S - anchor_template_s) * scale
        n0, n1 = self._span(t_lo, t_hi)
        if n1 <= n0:
            return
        u = anchor_template_s + (self._times(n0, n1) - anchor_s) / scale
        position = (u - TEMPLATE_START_S) * TEMPLATE_RATE
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

    def profile(self, amplitudes: np.ndarray, t_lo: float, t_hi: float, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add ``fn`` of time (s), times per-lead amplitudes (mV), between ``t_lo`` and ``t_hi``."""
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

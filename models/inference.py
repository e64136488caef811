"""What every inference backend shares (models/backends.py, models/triton_backend.py): the
``InferenceBackend`` protocol — ``predict`` a batch of preprocessed inputs, per-label probabilities
back, float32 [B, L] in the card's label order — the check of a batch's shape and the sigmoid.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class InferenceBackend(Protocol):
    name: str  # "onnxruntime" / "torch" ...
    device: str  # "cpu" / "cuda" / "cuda:0"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """[B, ...] float32 preprocessed inputs → [B, L] float32 probabilities."""
        ...


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Per-label probabilities of logits, float32."""
    # Computed in float64: exp overflow for large negative logits is avoided and the float32
    # result matches torch.sigmoid to rounding.
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def check_batch(batch: np.ndarray, expected: list[int | None] | None) -> np.ndarray:
    """``batch`` as contiguous float32, ValueError when its shape is not ``expected`` (batch first,
    None: any size)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if expected is not None:
        if batch.ndim != len(expected):
            raise ValueError(f"expected input of rank {len(expected)} {expected}, got shape {batch.shape}")
        for axis, (got, want) in enumerate(zip(batch.shape, expected)):
            if want is not None and axis > 0 and got != want:
                raise ValueError(f"expected input shape {expected} (batch first), got {batch.shape}")
    return batch

"""Training-time ECG augmentation (datasets.ecg.augment) on a real preprocessed record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.ecg.augment import RandAmplitudeScale, RandBaselineWander, RandTimeShift, ecg_augment


@pytest.fixture(scope="module")
def record(real_inputs):
    return torch.from_numpy(real_inputs[0].copy())


@pytest.fixture(scope="module")
def real_inputs(cinc_dir):
    from datasets.ecg.readers import read_wfdb
    from datasets.ecg.transforms import preprocess_signals

    rec = read_wfdb(cinc_dir / "E07500.hea").in_standard_order()
    return preprocess_signals(rec.signals, rec.sampling_rate)[None]


def test_same_seed_same_augmentation_on_tensors_and_arrays(record):
    augment = ecg_augment(probability=1.0)
    outputs = []
    for _ in range(2):
        augment.set_random_state(seed=7)
        outputs.append(augment(record.clone()))
    assert isinstance(outputs[0], torch.Tensor) and outputs[0].dtype == torch.float32
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], record)
    augment.set_random_state(seed=8)
    assert not torch.equal(augment(record.clone()), outputs[0])
    augment.set_random_state(seed=7)
    from_array = augment(record.numpy().copy())  # MONAI's noise transform hands back a tensor
    assert np.allclose(np.asarray(from_array), outputs[0].numpy(), atol=1e-6)


def test_each_transform_stays_small(record):
    scale = RandAmplitudeScale(prob=1.0, scale=0.1)
    scale.set_random_state(seed=1)
    scaled = scale(record)
    ratio = float((scaled[1] @ record[1]) / (record[1] @ record[1]))
    assert 0.9 <= ratio <= 1.1 and ratio != 1.0

    wander = RandBaselineWander(prob=1.0, max_mv=0.05)
    wander.set_random_state(seed=2)
    drift = wander(record) - record
    assert 0 < float(drift.abs().max()) <= 0.05
    # A slow wave (≤ 0.5 Hz): barely changes between neighbouring samples at 500 Hz.
    assert float((drift[:, 1:] - drift[:, :-1]).abs().max()) < 0.05 * 2 * np.pi * 0.5 / 500 * 1.01

    shift = RandTimeShift(prob=1.0, max_shift_s=0.4)
    shift.set_random_state(seed=3)
    moved = shift(record)
    k = shift._shift
    assert k != 0 and abs(k) <= 200
    if k > 0:
        assert torch.equal(moved[:, k:], record[:, :-k]) and (moved[:, :k] == 0).all()
    else:
        assert torch.equal(moved[:, :k], record[:, -k:]) and (moved[:, k:] == 0).all()


def test_probability_zero_is_the_identity(record):
    augment = ecg_augment(probability=0.0)
    augment.set_random_state(seed=0)
    assert torch.equal(augment(record.clone()), record)
    assert len(ecg_augment(amplitude_scale=0, baseline_wander_mv=0, noise_std_mv=0, max_shift_s=0).transforms) == 0

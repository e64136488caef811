"""ECG transforms in MONAI's array / dictionary pairing, and THE preprocessing built from them."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import Compose, MapTransform, Transform

from datasets.ecg import transforms as T
from datasets.ecg.readers import read_wfdb
from tests.conftest import shared_data_dir


@pytest.fixture(scope="module")
def record():
    return read_wfdb(shared_data_dir() / "ecg" / "cinc2021" / "E07500.hea").in_standard_order()


PAIRS = [
    (T.Resample(250), T.Resampled(250)),
    (T.BandPass(), T.BandPassd()),
    (T.RemoveBaseline(), T.RemoveBaselined()),
    (T.FixedWindow(8.0, "start"), T.FixedWindowd(8.0, "start")),
    (T.Normalize(2.0), T.Normalized(2.0)),
]


@pytest.mark.parametrize("array, mapped", PAIRS, ids=lambda t: type(t).__name__)
def test_dict_form_applies_the_array_form(record, array, mapped):
    assert isinstance(array, Transform) and isinstance(mapped, MapTransform)
    data = {"signals": record.signals, "sampling_rate": record.sampling_rate, "other": "kept"}
    out = mapped(data)
    expected = array(record.signals, record.sampling_rate) if mapped.uses_rate else array(record.signals)
    np.testing.assert_array_equal(out["signals"], expected)
    assert out["other"] == "kept" and data["signals"] is record.signals  # the input dict is not modified
    assert out["sampling_rate"] == (250.0 if isinstance(array, T.Resample) else record.sampling_rate)


def test_several_keys_and_missing_keys(record):
    data = {"signals": record.signals, "median": record.signals[:, :600], "sampling_rate": 500.0}
    out = T.Resampled(250, keys=("signals", "median"))(data)
    assert out["signals"].shape[1] == 2500 and out["median"].shape[1] == 300 and out["sampling_rate"] == 250.0
    with pytest.raises(KeyError):
        T.BandPassd(keys=("absent",))(data)
    assert T.BandPassd(keys=("absent",), allow_missing_keys=True)(data)["signals"] is data["signals"]


def test_the_preprocessing_is_a_monai_compose(record):
    pipeline = T.ecg_preprocess()
    assert isinstance(pipeline, Compose) and all(isinstance(t, MapTransform) for t in pipeline.transforms)
    x = T.preprocess_signals(record.signals, record.sampling_rate)
    assert x.shape == (12, 5000) and x.dtype == np.float32
    # the same numbers from the dict pipeline, from a 250 Hz copy after resampling, and never NaN
    np.testing.assert_array_equal(pipeline({"signals": record.signals, "sampling_rate": 500.0})["signals"], x)
    half = T.preprocess_signals(record.signals[:, ::2], 250.0)
    assert half.shape == (12, 5000) and np.isfinite(half).all()
    assert np.corrcoef(half[1], x[1])[0, 1] > 0.95


def test_fixed_window_pads_and_cuts():
    signals = np.ones((12, 3000))
    assert T.FixedWindow(10.0)(signals, 500).shape == (12, 5000)
    assert T.FixedWindow(10.0)(signals, 500)[:, 3000:].sum() == 0
    long = np.arange(7000.0)[None].repeat(12, 0)
    assert T.FixedWindow(10.0, "center")(long, 500)[0, 0] == 1000
    rng_window = T.FixedWindow(10.0, "random", rng=np.random.default_rng(0))(long, 500)
    assert rng_window.shape == (12, 5000) and 0 <= rng_window[0, 0] <= 2000
    with pytest.raises(ValueError):
        T.FixedWindow(10.0, "middle")

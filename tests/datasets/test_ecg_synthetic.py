"""Synthetic ECGs: label codes, what each label looks like when measured, dataset determinism."""

from __future__ import annotations

import warnings

import neurokit2 as nk
import numpy as np
import pytest

from datasets.ecg import synthetic
from datasets.ecg.record import STANDARD_LEADS
from datasets.ecg.synthetic import HEART_RATE_RANGES, LABEL_CODES, make_synthetic_ecg_dataset, simulate_ecg
from datasets.ecg.transforms import preprocess_signals

RECORDS_PER_RHYTHM = 8


def measured_rr(record) -> np.ndarray:
    """RR intervals (s) found by neurokit2 in V4 after THE preprocessing (V4: a tall R wave in
    every template variant, less T-wave-dominated than the limb leads at slow rates)."""
    x = preprocess_signals(record.signals, record.sampling_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(x[STANDARD_LEADS.index("V4")], sampling_rate=500)
    return np.diff(info["ECG_R_Peaks"]) / 500.0


def test_label_codes_match_the_models_label_set():
    from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES

    assert LABEL_CODES == ECG_LABEL_CODES
    assert set(synthetic.RHYTHM_LABELS) | set(synthetic.MORPHOLOGY_LABELS) == set(LABEL_CODES)


def test_record_format():
    record = simulate_ecg({"STACH", "STE"}, np.random.default_rng(0))
    assert record.signals.shape == (12, 5000)
    assert record.leads == STANDARD_LEADS and record.sampling_rate == 500
    assert record.labels == ["STACH", "STE"]
    assert record.meta["label_system"] == "preread"
    assert record.meta["synthetic"]["st_territory"] in ("inferior", "anterior", "lateral")
    assert 0.1 <= record.meta["synthetic"]["st_elevation_mv"] <= 0.4
    # millivolts: QRS complexes of a few tenths to a few mV, not raw ADC units
    assert 0.3 < np.abs(record.signals).max() < 10


def test_other_rates_and_durations():
    record = simulate_ecg({"AF"}, np.random.default_rng(1), sampling_rate=250, duration_s=15.0)
    assert record.signals.shape == (12, 3750)


def test_rhythm_label_is_added_and_validated():
    assert simulate_ecg({"PREM"}, np.random.default_rng(2)).labels == ["NORM", "PREM"]
    with pytest.raises(ValueError, match="at most one rhythm"):
        simulate_ecg({"AF", "STACH"}, np.random.default_rng(3))
    with pytest.raises(ValueError, match="unknown label codes"):
        simulate_ecg({"MI"}, np.random.default_rng(3))


@pytest.mark.parametrize("rhythm", ["NORM", "STACH", "SBRAD"])
def test_measured_heart_rate_lands_in_the_labelled_range(rhythm):
    low, high = {"NORM": (60, 100), "STACH": (100, 200), "SBRAD": (30, 60)}[rhythm]
    for k in range(RECORDS_PER_RHYTHM):
        morphology = [set(), {"STE"}, {"WQRS"}][k % 3]
        record = simulate_ecg({rhythm} | morphology, np.random.default_rng(100 + k))
        rr = measured_rr(record)
        heart_rate = 60.0 / rr.mean()
        drawn = record.meta["synthetic"]["heart_rate_bpm"]
        assert HEART_RATE_RANGES[rhythm][0] <= drawn <= HEART_RATE_RANGES[rhythm][1]
        assert low < heart_rate < high, f"{rhythm}+{morphology}: measured {heart_rate:.1f} bpm"
        assert abs(heart_rate - drawn) < 3.0, f"measured {heart_rate:.1f} vs drawn {drawn}"
        assert rr.std() / rr.mean() < 0.08, "sinus rhythm must be regular"


def test_atrial_fibrillation_is_irregularly_irregular():
    for k in range(RECORDS_PER_RHYTHM):
        record = simulate_ecg({"AF"}, np.random.default_rng(200 + k))
        rr = measured_rr(record)
        assert rr.std() / rr.mean() > 0.1, record.meta["synthetic"]


def test_premature_beats_are_early_with_a_pause():
    record = simulate_ecg({"NORM", "PREM"}, np.random.default_rng(7))
    assert record.meta["synthetic"]["n_premature"] >= 1
    rr = measured_rr(record)
    normal = np.median(rr)
    assert rr.min() < 0.8 * normal  # the early beat
    assert rr.max() > 1.2 * normal  # the compensatory pause


def test_wide_qrs_parameters():
    for k in range(6):
        wide = simulate_ecg({"WQRS"}, np.random.default_rng(300 + k)).meta["synthetic"]
        normal = simulate_ecg({"NORM"}, np.random.default_rng(300 + k)).meta["synthetic"]
        assert 120 <= wide["qrs_ms"] <= 180 and wide["bundle_branch_block"] in ("RBBB", "LBBB")
        assert 80 <= normal["qrs_ms"] <= 100 and normal["bundle_branch_block"] is None


def test_st_elevation_shows_in_the_territory():
    """ST level 60 ms after the J point, relative to the PR segment, in the territory's leads."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        base_seed = int(rng.integers(2**31))
        with_ste = simulate_ecg({"NORM", "STE"}, np.random.default_rng(base_seed))
        territory = with_ste.meta["synthetic"]["st_territory"]
        leads = {"inferior": ["II", "III", "aVF"], "anterior": ["V2", "V3"], "lateral": ["I", "aVL"]}[territory]
        x = preprocess_signals(with_ste.signals, 500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peaks = nk.ecg_peaks(x[STANDARD_LEADS.index("V4")], sampling_rate=500)[1]["ECG_R_Peaks"]
        peaks = peaks[(peaks > 100) & (peaks < 4900)]
        for lead in leads:
            row = x[STANDARD_LEADS.index(lead)]
            st = np.median([row[p + 50 : p + 60].mean() - row[p - 45 : p - 35].mean() for p in peaks])
            assert st > 0.05, f"{territory}: {lead} ST {st:.3f} mV"


def test_dataset_shapes_determinism_and_cache(tmp_path):
    X, Y = make_synthetic_ecg_dataset(24, seed=5, cache_dir=tmp_path)
    assert X.shape == (24, 12, 5000) and X.dtype == np.float32
    assert Y.shape == (24, len(LABEL_CODES)) and Y.dtype == np.float32
    assert (Y[:, :4].sum(axis=1) == 1).all(), "exactly one rhythm label per record"
    cached = list(tmp_path.glob("synthetic-ecg-n24-seed5-v*.npz"))
    assert len(cached) == 1
    X_again, Y_again = make_synthetic_ecg_dataset(24, seed=5, cache_dir=tmp_path)
    np.testing.assert_array_equal(X, X_again)
    cached[0].unlink()
    X_fresh, Y_fresh = make_synthetic_ecg_dataset(24, seed=5)  # regenerated, not read back
    np.testing.assert_array_equal(X, X_fresh)
    np.testing.assert_array_equal(Y, Y_fresh)
    X_other, _ = make_synthetic_ecg_dataset(24, seed=6)
    assert not np.array_equal(X, X_other)
    # record i does not depend on n
    X_small, _ = make_synthetic_ecg_dataset(8, seed=5)
    np.testing.assert_array_equal(X_small, X[:8])


def test_label_mix_covers_every_label():
    _, Y = make_synthetic_ecg_dataset(200, seed=0)
    prevalence = Y.mean(axis=0)
    assert (prevalence > 0.1).all(), dict(zip(LABEL_CODES, prevalence))

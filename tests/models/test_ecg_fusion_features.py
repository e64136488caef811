"""The fusion head's feature order is part of every trained head: it must not change with refactoring."""

from __future__ import annotations

from models.ecg.fusion import AXIS_FEATURES, GLOBAL_FEATURES, feature_names

# As the heads in the model cards were trained (models/ecg/fusion.py before the vocabulary moved).
TRAINED_GLOBAL_FEATURES = (
    "heart_rate_bpm", "rr_sd_ms", "rr_irregularity", "rr_successive_irregularity", "pr_interval_ms",
    "p_duration_ms", "qrs_duration_ms", "qt_interval_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
    "sokolow_lyon_mv", "cornell_mv", "qrs_limb_max_mv", "qrs_precordial_max_mv", "p_wave_consistency",
)  # fmt: skip


def test_feature_order_is_pinned():
    assert GLOBAL_FEATURES == TRAINED_GLOBAL_FEATURES
    assert AXIS_FEATURES == ("p_axis_deg", "qrs_axis_deg", "t_axis_deg")
    assert all(type(name) is str for name in GLOBAL_FEATURES + AXIS_FEATURES)


def test_feature_names_of_a_full_measurement_in_trained_order():
    # Given in reverse: the names follow the head's order, not the dict's.
    keys = list(TRAINED_GLOBAL_FEATURES) + list(AXIS_FEATURES) + ["n_beats", "rr_mean_ms"]
    values = {key: 1.0 for key in reversed(keys)}
    names = feature_names(values)
    assert names == [*TRAINED_GLOBAL_FEATURES] + [
        "p_axis_deg_cos", "p_axis_deg_sin", "qrs_axis_deg_cos", "qrs_axis_deg_sin", "t_axis_deg_cos", "t_axis_deg_sin",
    ]  # fmt: skip

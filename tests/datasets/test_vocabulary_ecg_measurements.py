"""The ECG measurement vocabulary: one name per measurement, the keys stored reads and cards already use."""

from __future__ import annotations

import ast
import inspect

import pytest

from datasets.vocabulary import ecg_measurements
from datasets.vocabulary.ecg_measurements import (
    AXIS_MEASUREMENTS,
    CART_MEASUREMENTS,
    LEAD_MEASUREMENTS,
    PRIOR_DELTA_MEASUREMENTS,
    SUITE_MEASUREMENTS,
    EcgLeadMeasurement,
    EcgMeasurement,
)

# The keys as stored in reads (INTERFACES.md "The read") and in the measurement suite's output, in order.
STORED_SUITE_KEYS = (
    "heart_rate_bpm", "rr_mean_ms", "rr_sd_ms", "rr_irregularity", "rr_successive_irregularity",
    "pr_interval_ms", "p_duration_ms", "qrs_duration_ms", "qt_interval_ms", "qtc_bazett_ms",
    "qtc_fridericia_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg", "sokolow_lyon_mv", "cornell_mv",
    "qrs_limb_max_mv", "qrs_precordial_max_mv", "p_wave_consistency", "pacing_spike_fraction",
    "n_beats", "n_beats_median",
)  # fmt: skip
STORED_CART_KEYS = (
    "heart_rate_bpm", "rr_interval_ms", "pr_interval_ms", "p_duration_ms", "qrs_duration_ms",
    "qt_interval_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg",
)  # fmt: skip


def test_subsets_keep_the_stored_keys_and_order():
    assert SUITE_MEASUREMENTS == STORED_SUITE_KEYS
    assert CART_MEASUREMENTS == STORED_CART_KEYS
    assert AXIS_MEASUREMENTS == ("p_axis_deg", "qrs_axis_deg", "t_axis_deg")
    assert PRIOR_DELTA_MEASUREMENTS == tuple(
        key for key in STORED_CART_KEYS if key not in ("rr_interval_ms", "p_duration_ms")
    )


@pytest.mark.parametrize("subset", [SUITE_MEASUREMENTS, CART_MEASUREMENTS, AXIS_MEASUREMENTS, PRIOR_DELTA_MEASUREMENTS])
def test_subsets_are_plain_strings_of_members(subset):
    # Plain str (not the enum) so dicts keyed by them serialise exactly as before.
    assert all(type(key) is str for key in subset)
    assert {EcgMeasurement(key) for key in subset} and len(set(subset)) == len(subset)


def test_the_interface_measurements_are_members():
    for key in ("heart_rate_bpm", "pr_interval_ms", "p_duration_ms", "qrs_duration_ms", "qt_interval_ms",
                "qtc_bazett_ms", "qtc_fridericia_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg"):  # fmt: skip
        assert EcgMeasurement(key).value == key


def test_every_member_has_a_docstring_with_its_unit():
    source = ast.parse(inspect.getsource(ecg_measurements))
    enum_body = next(node for node in source.body if isinstance(node, ast.ClassDef)).body
    documented = {}
    for node, following in zip(enum_body, enum_body[1:], strict=False):
        if isinstance(node, ast.Assign) and isinstance(following, ast.Expr):
            documented[node.targets[0].id] = following.value.value  # type: ignore[attr-defined]
    assert set(documented) == set(EcgMeasurement.__members__)
    units = {"_ms": "ms", "_bpm": "per minute", "_deg": "degrees", "_mv": "mV"}
    for member in EcgMeasurement:
        unit = next((text for suffix, text in units.items() if member.value.endswith(suffix)), None)
        assert unit is None or unit in documented[member.name], member


def test_the_lead_measurements_keep_the_stored_keys_and_say_their_unit():
    # The keys of the read's lead_measurements[lead] as stored, in order (plain str, as the suite's dict has them).
    assert LEAD_MEASUREMENTS == ("p_amp_mv", "q_amp_mv", "r_amp_mv", "s_amp_mv", "st_j_mv", "st_j60_mv", "t_amp_mv")
    assert all(type(key) is str for key in LEAD_MEASUREMENTS)
    assert not set(LEAD_MEASUREMENTS) & {member.value for member in EcgMeasurement}
    source = ast.parse(inspect.getsource(ecg_measurements))
    enum_body = next(
        node for node in source.body if isinstance(node, ast.ClassDef) and node.name == "EcgLeadMeasurement"
    ).body
    documented = {
        node.targets[0].id: following.value.value  # type: ignore[attr-defined]
        for node, following in zip(enum_body, enum_body[1:], strict=False)
        if isinstance(node, ast.Assign) and isinstance(following, ast.Expr)
    }
    assert set(documented) == set(EcgLeadMeasurement.__members__)
    assert all("mV" in text for text in documented.values())

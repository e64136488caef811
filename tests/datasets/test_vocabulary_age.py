"""One age band set for de-identified exports and evaluation subgroups alike."""

from __future__ import annotations

import math

import pytest

from datasets.vocabulary.age import AGE_BAND_BOUNDS, AgeBand, age_band, age_in_years, deidentified_age_band


@pytest.mark.parametrize(
    ("age", "band"),
    [
        ("010M", AgeBand.Y0_17),
        (17.9, AgeBand.Y0_17),
        ("018Y", AgeBand.Y18_39),
        (39, AgeBand.Y18_39),
        ("040Y", AgeBand.Y40_64),
        (64.99, AgeBand.Y40_64),
        (65, AgeBand.Y65_79),
        ("067", AgeBand.Y65_79),
        (80, AgeBand.Y80_89),
        (89.9, AgeBand.Y80_89),
        (90, AgeBand.Y90_PLUS),
        ("104Y", AgeBand.Y90_PLUS),
        (None, AgeBand.UNKNOWN),
        ("", AgeBand.UNKNOWN),
        ("abc", AgeBand.UNKNOWN),
        (-1, AgeBand.UNKNOWN),
        (math.nan, AgeBand.UNKNOWN),
    ],
)
def test_age_band(age, band):
    assert age_band(age) is band


def test_bounds_cover_every_age_once_without_gaps():
    assert AGE_BAND_BOUNDS[0][0] == 0 and AGE_BAND_BOUNDS[-1][1] == math.inf
    for (_, high, _), (low, _, _) in zip(AGE_BAND_BOUNDS, AGE_BAND_BOUNDS[1:], strict=False):
        assert high == low
    assert {band for _, _, band in AGE_BAND_BOUNDS} == set(AgeBand) - {AgeBand.UNKNOWN}


def test_safe_harbor_no_band_narrows_an_age_over_89():
    # Safe Harbor: every age over 89 is aggregated into one category.
    over_89 = {deidentified_age_band(age) for age in (90, 95, 101, "120Y")}
    assert over_89 == {"90+"}
    assert all(low < 90 or band is AgeBand.Y90_PLUS for low, _, band in AGE_BAND_BOUNDS)


def test_export_leaves_an_unknown_age_empty_and_gives_plain_strings():
    assert deidentified_age_band(None) is None and deidentified_age_band("x") is None
    band = deidentified_age_band("067Y")
    assert band == "65-79" and type(band) is str


def test_age_in_years_units():
    assert age_in_years("006M") == pytest.approx(0.5)
    assert age_in_years("045Y") == 45 and age_in_years(True) is None

"""Age: one parser for the ways an age arrives (DICOM AS strings such as ``045Y`` / ``006M``, plain
numbers), and the two band sets the project reports in — each named for its one use:

- ``AgeDecade`` — ten-year bands with a 90+ top band (the HIPAA Safe Harbor aggregation): what a
  de-identified export says instead of an age (serving's exports, datasets/sources/worklist.py).
- ``AgeGroup`` — the clinical subgroups of an evaluation report (children, young adults, middle
  age, older, oldest): evaluation/subgroups.py.

A subgroup table keeps a decade band that a de-identified export gave (it cannot be re-banded
into ``AgeGroup`` without the age), so tables built from exports show decades.
"""

from __future__ import annotations

import math
from enum import StrEnum

_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def age_in_years(age: object) -> float | None:
    """Years from a number or a DICOM Age String (``040Y``; months, weeks and days as fractions of
    a year); None when unknown or invalid (empty, NaN, negative, not a number)."""
    if age is None or isinstance(age, bool):
        return None
    if isinstance(age, (int, float)):
        value = float(age)
    else:
        text = str(age).strip().upper()
        factor = _AGE_UNITS.get(text[-1:])
        try:
            value = float(text[:-1]) * factor if factor else float(text)
        except ValueError:
            return None
    return None if math.isnan(value) or value < 0 else value


class AgeDecade(StrEnum):
    """A ten-year age band of a de-identified export."""

    Y0_9 = "0-9"
    """Under ten (including infants whose age is given in days, weeks or months)."""
    Y10_19 = "10-19"
    """Ten to nineteen."""
    Y20_29 = "20-29"
    """Twenty to twenty-nine."""
    Y30_39 = "30-39"
    """Thirty to thirty-nine."""
    Y40_49 = "40-49"
    """Forty to forty-nine."""
    Y50_59 = "50-59"
    """Fifty to fifty-nine."""
    Y60_69 = "60-69"
    """Sixty to sixty-nine."""
    Y70_79 = "70-79"
    """Seventy to seventy-nine."""
    Y80_89 = "80-89"
    """Eighty to eighty-nine."""
    Y90_PLUS = "90+"
    """Ninety or older: aggregated, as Safe Harbor requires."""


def age_decade(age: object) -> str | None:
    """The ``AgeDecade`` value of ``age``, or None when the age is unknown."""
    years = age_in_years(age)
    if years is None:
        return None
    if years >= 90:
        return AgeDecade.Y90_PLUS.value
    low = int(years) // 10 * 10
    return f"{low}-{low + 9}"


class AgeGroup(StrEnum):
    """A clinical age subgroup of an evaluation report (the lower bound is included)."""

    CHILD = "<18"
    """Under 18: outside the adult models' intended use."""
    YOUNG_ADULT = "18-39"
    """18 to 39."""
    MIDDLE_AGE = "40-64"
    """40 to 64."""
    OLDER = "65-79"
    """65 to 79."""
    OLDEST = "80+"
    """80 and older."""
    UNKNOWN = "unknown"
    """No usable age."""


AGE_GROUP_BOUNDS: tuple[tuple[float, float, AgeGroup], ...] = (
    (0, 18, AgeGroup.CHILD),
    (18, 40, AgeGroup.YOUNG_ADULT),
    (40, 65, AgeGroup.MIDDLE_AGE),
    (65, 80, AgeGroup.OLDER),
    (80, math.inf, AgeGroup.OLDEST),
)


def age_group(age: object) -> str:
    """The ``AgeGroup`` value of ``age`` ("unknown" when there is none)."""
    years = age_in_years(age)
    if years is None:
        return AgeGroup.UNKNOWN.value
    return next(group.value for low, high, group in AGE_GROUP_BOUNDS if low <= years < high)

"""Age: one parser for the ways an age arrives (DICOM AS strings such as ``045Y`` / ``006M``, plain
numbers), and the one band set the project reports ages in, :class:`AgeBand`.

The same bands serve both uses, so a subgroup table built from de-identified exports and one built
from ages line up band by band:

- a de-identified export says the band instead of the age (serving's exports,
  datasets/sources/worklist.py): the bands are wide and the top band is 90+, as HIPAA Safe Harbor
  requires (no age over 89 is given);
- an evaluation report's subgroups (evaluation/subgroups.py) are clinical: children (outside the
  adult models' intended use), young adults, middle age, older, the elderly, the oldest.
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


class AgeBand(StrEnum):
    """An age band of a de-identified export and of an evaluation subgroup (the lower bound is included)."""

    Y0_17 = "0-17"
    """Under 18 (including infants whose age is given in days, weeks or months): outside the adult
    models' intended use."""
    Y18_39 = "18-39"
    """18 to 39: young adults."""
    Y40_64 = "40-64"
    """40 to 64: middle age."""
    Y65_79 = "65-79"
    """65 to 79: older adults."""
    Y80_89 = "80-89"
    """80 to 89: the elderly."""
    Y90_PLUS = "90+"
    """90 or older: aggregated into one band, as Safe Harbor requires."""
    UNKNOWN = "unknown"
    """No usable age (a subgroup of its own; an export leaves the band empty instead)."""


AGE_BAND_BOUNDS: tuple[tuple[float, float, AgeBand], ...] = (
    (0, 18, AgeBand.Y0_17),
    (18, 40, AgeBand.Y18_39),
    (40, 65, AgeBand.Y40_64),
    (65, 80, AgeBand.Y65_79),
    (80, 90, AgeBand.Y80_89),
    (90, math.inf, AgeBand.Y90_PLUS),
)
"""(lower bound included, upper bound excluded, band) in years, youngest first."""


def age_band(age: object) -> AgeBand:
    """The band of ``age`` (a number or a DICOM Age String); ``AgeBand.UNKNOWN`` when there is none."""
    years = age_in_years(age)
    if years is None:
        return AgeBand.UNKNOWN
    return next(band for low, high, band in AGE_BAND_BOUNDS if low <= years < high)


def deidentified_age_band(age: object) -> str | None:
    """What a de-identified export says instead of ``age``: the band's value, None when unknown."""
    band = age_band(age)
    return None if band is AgeBand.UNKNOWN else band.value

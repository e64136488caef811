"""Triage levels: how soon a county reader should look at a study."""

from __future__ import annotations

from enum import StrEnum


class TriageLevel(StrEnum):
    """The level of a study on the worklist, most urgent first (the worklist orders by level, then
    score, then waiting time; aging escalates a level, never lowers it)."""

    CRITICAL = "critical"
    """Read now: e.g. STEMI criteria, AF with a rapid rate, heart rate < 40 or > 150, QTc > 500 ms."""

    URGENT = "urgent"
    """Read within the hour."""

    ROUTINE = "routine"
    """Read in order of arrival."""

    @property
    def rank(self) -> int:
        """0 for the most urgent level; sort ascending."""
        return LEVEL_RANK[self.value]


LEVEL_RANK: dict[str, int] = {"critical": 0, "urgent": 1, "routine": 2}

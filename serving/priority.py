"""Request priority for model work: critical, urgent or routine, decided from what is known when a
study arrives (before any AI read), and carried to the model replica with the request.

The rule (docs/serving.md, "Priority"):

- ECG over HTTP: the optional ``priority`` the sender gives (``POST /api/v1/ecg?priority=critical``;
  a village doctor with a chest-pain patient says so); routine when not given.
- DICOM: the stored object's Requested Procedure Priority (0040,1003), top level or in the Request
  Attributes Sequence: STAT → critical, HIGH → urgent; the C-STORE request's own Priority
  (0000,0700) HIGH → urgent, kept with the study (``Study.priority``) so whichever replica leases
  the study reads it so. The highest of these wins; routine otherwise.
- KServe v2 raw calls: the request parameter ``priority`` — a level name, or Triton's numbers
  (1 highest … 3; 0 = the default, routine).

A replica under load serves queued critical work before urgent before routine (serving.replica.batching);
waiting promotes work one level per ``aging_s`` so routine work is never starved.

The level travels inside the ingress in a context variable (``request_priority``), so the
workflows that call a model (ECG workflow, DICOM dispatcher) need no extra parameter: the code that
knows the priority wraps the read, and the model call reads ``current_priority()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from datasets.vocabulary import LEVEL_RANK, TriageLevel

Level = Literal["critical", "urgent", "routine"]  # the values of TriageLevel, as strings on the wire
LEVELS: tuple[str, ...] = tuple(level.value for level in TriageLevel)
DEFAULT: Level = "routine"

# DICOM (0040,1003) Requested Procedure Priority: defined terms STAT, HIGH, ROUTINE, MEDIUM, LOW.
_REQUESTED_PRIORITY = {"STAT": "critical", "HIGH": "urgent"}
# DICOM (0000,0700) Priority of a DIMSE request: 0x0002 LOW, 0x0000 MEDIUM, 0x0001 HIGH.
DIMSE_PRIORITY_HIGH = 0x0001


class PriorityError(ValueError):
    """A priority that is neither a level name nor a Triton priority number."""


def rank(level: str) -> int:
    """0 for critical, 1 urgent, 2 routine (lower is served first)."""
    return LEVEL_RANK[level]


def parse_priority(value: Any) -> Level:
    """A level from a name (any case) or a Triton priority number (1 = highest; 0 = default).
    None → routine. Raises PriorityError naming the accepted values."""
    if value is None or value == "":
        return DEFAULT
    if isinstance(value, bool):
        raise PriorityError(f"priority must be one of {', '.join(LEVELS)} or 0-3, got {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number == 0:
            return DEFAULT
        if 1 <= number <= len(LEVELS):
            return LEVELS[number - 1]  # type: ignore[return-value]
        raise PriorityError(f"priority number must be 0-{len(LEVELS)} (1 = critical), got {number}")
    name = str(value).strip().lower()
    if name not in LEVELS:
        raise PriorityError(f"priority must be one of {', '.join(LEVELS)}, got {value!r}")
    return name  # type: ignore[return-value]


def highest(*levels: str | None) -> Level:
    present = [level for level in levels if level]
    return min(present, key=rank) if present else DEFAULT  # type: ignore[return-value]


def dicom_priority(ds: Any, command_priority: int | None = None) -> Level:
    """The level of a DICOM object from (0040,1003) Requested Procedure Priority (top level or in
    the Request Attributes Sequence) and the C-STORE request's (0000,0700) Priority, if known."""
    found: list[str | None] = []
    requested = [getattr(ds, "RequestedProcedurePriority", None)]
    for item in getattr(ds, "RequestAttributesSequence", None) or []:
        requested.append(getattr(item, "RequestedProcedurePriority", None))
    for value in requested:
        if value:
            found.append(_REQUESTED_PRIORITY.get(str(value).strip().upper()))
    if command_priority == DIMSE_PRIORITY_HIGH:
        found.append("urgent")
    return highest(*found)


_current: ContextVar[str] = ContextVar("preread_request_priority", default=DEFAULT)


@contextmanager
def request_priority(level: str | None) -> Iterator[Level]:
    """Model calls made inside this block (same task) carry ``level``."""
    parsed = parse_priority(level)
    token = _current.set(parsed)
    try:
        yield parsed
    finally:
        _current.reset(token)


def current_priority() -> Level:
    return _current.get()  # type: ignore[return-value]

"""The one error type for ECG input that cannot be read or accepted.

Every reader and validation failure raises :class:`EcgInputError`. The HTTP layer turns it into a
422 response ``{"detail": {"field": ..., "reason": ...}}``, so both parts are written for the person
at the clinic who has to fix the upload: ``field`` says precisely what is wrong (``"leads"``,
``"leads.V3"``, ``"sampling_rate"``, ``"duration"``, ``"signals.II"``, ``"file"``,
``"WaveformSequence"`` ...) and ``reason`` says why, in plain words.
"""

from __future__ import annotations


class EcgInputError(ValueError):
    """An ECG upload that cannot be read or does not pass the checks.

    Attributes:
        field: what is wrong, as precisely as possible (e.g. ``"leads.V2"``).
        reason: a plain-language explanation (e.g. ``"expected a list of numbers"``).
    """

    def __init__(self, field: str, reason: str):
        self.field = str(field)
        self.reason = str(reason)
        super().__init__(f"{self.field}: {self.reason}")

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def __reduce__(self):  # keeps field/reason when pickled (e.g. across Ray workers)
        return (type(self), (self.field, self.reason))

    def to_dict(self) -> dict[str, str]:
        """The body of the 422 ``detail``."""
        return {"field": self.field, "reason": self.reason}

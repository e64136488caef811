"""Where a study is on its way from arrival to a signed report, and the state of its report."""

from __future__ import annotations

from enum import StrEnum


class StudyStatus(StrEnum):
    """A study's status, in the order a study moves through them."""

    RECEIVED = "received"
    """Stored durably, waiting for the AI read (the durable queue of pending work)."""

    AI_READ = "ai_read"
    """A preliminary AI read is attached; waiting for a reader."""

    NO_AI_READ = "no_ai_read"
    """Stored and listed, but no model reads it (no routing rule, the patient declined, unreadable)."""

    AI_FAILED = "ai_failed"
    """The model could not read it (retried with backoff); still listed for a doctor."""

    CLAIMED = "claimed"
    """A reader holds it for a while (the claim expires)."""

    SIGNED = "signed"
    """A reader signed the report."""


class ReportStatus(StrEnum):
    """The status of the report a clinic receives (FHIR DiagnosticReport.status)."""

    PRELIMINARY = "preliminary"
    """The AI read only; no doctor has signed."""

    FINAL = "final"
    """Signed by a reader."""

    AMENDED = "amended"
    """Signed again after a first signature (the later signature replaces the earlier)."""

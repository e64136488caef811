"""Masking of patient identifiers for the worklist and logs (PIPL: health data is sensitive)."""

from __future__ import annotations


def mask_name(name: str | None) -> str | None:
    """'Zhang^San' / 'Zhang San' → 'Z**** S**': enough for a reader to match a phone call, not to identify."""
    if not name:
        return name
    parts = [p for p in str(name).replace("^", " ").split() if p]
    return " ".join(p[0] + "*" * (len(p) - 1) for p in parts)


def mask_id(patient_id: str | None) -> str | None:
    """Keep the last 4 characters: '530102199001011234' → '**************1234'."""
    if not patient_id:
        return patient_id
    text = str(patient_id)
    keep = 4 if len(text) > 6 else 1
    return "*" * (len(text) - keep) + text[-keep:]

"""The base of every serving config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictSection(BaseModel):
    """A config section that rejects unknown keys: a misspelt setting in serving.yaml is an error at load,
    not a default silently kept."""

    model_config = ConfigDict(extra="forbid")

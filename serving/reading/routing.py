"""Series selection: which model reads which object of a study (configs/routing.yaml)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

MATCH_KEYS = ("modality", "body_part", "view_position", "sop_class")


class RoutingRule(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    model: str
    match: dict[str, list[str | None]] = {}

    @field_validator("match")
    @classmethod
    def _known_keys(cls, value: dict[str, list[str | None]]) -> dict[str, list[str | None]]:
        unknown = set(value) - set(MATCH_KEYS)
        if unknown:
            raise ValueError(f"unknown match keys {sorted(unknown)} (use {', '.join(MATCH_KEYS)})")
        return {k: [None if v is None else str(v).strip().upper() for v in vs] for k, vs in value.items()}

    def matches(self, attrs: dict[str, str | None]) -> bool:
        for key, accepted in self.match.items():
            value = attrs.get(key)
            value = str(value).strip().upper() if value not in (None, "") else None
            if value not in accepted:
                return False
        return True


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RoutingRule] = []


@dataclass
class Route:
    rule: RoutingRule | None
    instance: Any | None  # the instance (a store.schema.Instance) the model reads
    reason: str = ""
    considered: list[str] = field(default_factory=list)

    @property
    def model(self) -> str | None:
        return self.rule.model if self.rule else None


def instance_attrs(instance: Any) -> dict[str, str | None]:
    return {
        "modality": instance.modality,
        "body_part": instance.body_part,
        "view_position": instance.view_position,
        "sop_class": instance.sop_class_uid,
    }


class Router:
    def __init__(self, rules: Sequence[RoutingRule]):
        self.rules = list(rules)

    @classmethod
    def from_file(cls, path: str | Path) -> Router:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        return cls(RoutingConfig.model_validate(data).rules)

    def route(self, instances: Iterable[Any]) -> Route:
        """The first rule (in file order) with a matching original instance, and that instance."""
        originals = [i for i in instances if getattr(i, "role", "original") in (None, "original")]
        for rule in self.rules:
            for instance in originals:
                if rule.matches(instance_attrs(instance)):
                    return Route(rule, instance, f"rule {rule.name} → model {rule.model}")
        seen = sorted(
            {" / ".join(str(v or "-") for v in (i.modality, i.body_part, i.view_position)) for i in originals}
        )
        return Route(None, None, "no routing rule matches this study's objects: " + (", ".join(seen) or "none"), seen)

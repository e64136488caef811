"""The registry interface every backend implements (:class:`Registry`), what it hands out
(:class:`RegisteredModel`), its errors and the checks on names, aliases and sources. The file
registry (models/registry.py) and the MLflow registry (models/registry_mlflow.py) both build on
this module; ``models.registry.open_registry`` picks one."""

from __future__ import annotations

import json
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from models.card import ModelCard

REGISTRY_ENV = "PREREAD_REGISTRY"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_REGISTRY_ROOT = Path("var") / "registry"  # the file registry's default folder
DEFAULT_MLFLOW_DB = Path("var") / "mlflow" / "mlflow.db"  # the default registry: MLflow on SQLite
DEFAULT_REGISTRY_URI = f"sqlite:///{DEFAULT_MLFLOW_DB.as_posix()}"
CHAMPION = "champion"
CHALLENGER = "challenger"
LATEST = "latest"
ALIASES_FILENAME = "aliases.json"
MODEL_FILES = ("model.onnx", "model.pt", "state_dict.pt")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_VERSION_LIKE_ALIAS = re.compile(r"^v\d+$", re.IGNORECASE)  # MLflow reserves these for versions
# Where MLflow keeps registered models and run data: databases (direct) or a tracking server.
MLFLOW_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc")


class ModelNotFound(KeyError):
    """No model matches a reference (unknown name, version or alias, or a malformed reference)."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else "model not found"


class RegistryUnavailable(RuntimeError):
    """The registry's store cannot be reached or used (server down, database unreadable ...)."""


@dataclass(frozen=True)
class RegisteredModel:
    """One version of a registered model. ``path`` is a local folder holding its files (an MLflow
    version is downloaded on first access to ``path``, once); ``card`` is available without it."""

    name: str
    version: int
    card: ModelCard
    fetch: Callable[[], Path] = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()
    run_id: str | None = None  # the MLflow run that produced it (training run), if known

    @property
    def path(self) -> Path:
        return self.fetch()

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def torchscript_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def state_dict_path(self) -> Path:
        return self.path / "state_dict.pt"


@dataclass(frozen=True)
class LocalFolder:
    """``fetch`` for files that are already local (picklable, unlike a lambda)."""

    path: Path

    def __call__(self) -> Path:
        return self.path


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``"ecg"`` → (ecg, None, None); ``"ecg@champion"`` → (ecg, champion, None); ``"ecg/3"`` → (ecg, None, 3)."""
    ref = ref.strip()
    alias: str | None = None
    version: int | None = None
    name = ref
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif "/" in ref:
        name, raw_version = ref.split("/", 1)
        if not raw_version.isdigit() or int(raw_version) < 1:
            raise ModelNotFound(
                f"invalid model reference {ref!r}: the version after '/' must be a positive integer "
                "(use NAME, NAME@ALIAS or NAME/VERSION)"
            )
        version = int(raw_version)
    if not NAME_PATTERN.match(name) or (alias is not None and not alias):
        raise ModelNotFound(f"invalid model reference {ref!r} (use NAME, NAME@ALIAS or NAME/VERSION)")
    return name, alias, version


def check_alias(alias: str) -> str:
    """The same alias rules on every backend (MLflow's included): a letter first; letters, digits,
    '.', '_', '-'; neither 'latest' nor 'v<number>'."""
    if not _ALIAS_PATTERN.match(alias) or alias.lower() == LATEST or _VERSION_LIKE_ALIAS.match(alias):
        raise ValueError(
            f"invalid alias {alias!r}: starts with a letter; letters, digits, '.', '_', '-'; "
            "not 'latest' or 'v<number>'"
        )
    return alias


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def check_source(source_dir: str | Path) -> Path:
    """A folder that can be registered: it exists and holds at least one model file."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"model source directory {source_dir} not found")
    if not any((source_dir / f).is_file() for f in MODEL_FILES):
        raise ValueError(f"{source_dir} holds none of {', '.join(MODEL_FILES)}")
    return source_dir


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---- locations ----------------------------------------------------------------------------------


def redact_uri(uri: str) -> str:
    """``uri`` without a password (for messages and logs)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def registry_kind(location: str | Path) -> str:
    """``"files"`` for a folder, ``"mlflow"`` for an MLflow store URI; ValueError for anything else
    (with what to write instead)."""
    text = str(location).strip()
    if not text:
        raise ValueError(
            "empty registry location: give a folder (file registry) or an MLflow URI "
            f"such as {DEFAULT_REGISTRY_URI} or http://mlflow.example:5000"
        )
    if isinstance(location, Path) or "://" not in text:
        if text.split(":", 1)[0] in ("databricks", "databricks-uc"):
            return "mlflow"
        return "files"
    scheme = text.split("://", 1)[0].lower().split("+", 1)[0]  # postgresql+psycopg → postgresql
    if scheme == "file":
        raise ValueError(
            f"registry location {text!r}: use a plain folder path for the file registry, or "
            f"{DEFAULT_REGISTRY_URI} for a local MLflow store"
        )
    if scheme not in MLFLOW_SCHEMES:
        raise ValueError(
            f"registry location {redact_uri(text)!r}: unsupported scheme {scheme!r} "
            f"(use a folder, or one of {', '.join(s + '://' for s in MLFLOW_SCHEMES[:6])}, databricks)"
        )
    return "mlflow"


def absolute_location(location: str, base: str | Path | None = None) -> str:
    """A folder or a ``sqlite:///relative.db`` URI made absolute against ``base`` (default: the
    working directory); other URIs unchanged. Ray replicas need this: their working directory
    is not the driver's."""
    base = Path(base or Path.cwd()).resolve()
    if registry_kind(location) == "files":
        path = Path(location).expanduser()
        return str(path if path.is_absolute() else base / path)
    if location.startswith("sqlite:///") and not location.startswith("sqlite:////"):
        relative = location.removeprefix("sqlite:///")
        if relative and not relative.startswith(":memory:"):
            return f"sqlite:///{base / relative}"
    return location


# ---- the interface ------------------------------------------------------------------------------


class Registry(ABC):
    """What training, evaluation, serving and the CLI use; the same on every backend."""

    location: str  # where it is, for messages (no password)

    # -- backend primitives --
    @abstractmethod
    def names(self) -> list[str]:
        """Model names with at least one version."""

    @abstractmethod
    def _version_numbers(self, name: str) -> list[int]:
        """Registered version numbers of ``name``, ascending (empty if unknown)."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, int]:
        """Alias → version for ``name`` (empty if unknown)."""

    @abstractmethod
    def _load(self, name: str, version: int, aliases: Mapping[str, int]) -> RegisteredModel:
        """The RegisteredModel for an existing version (card loaded, files fetched lazily)."""

    @abstractmethod
    def register(
        self, name: str, source_dir: str | Path, card: ModelCard, *, run_id: str | None = None
    ) -> RegisteredModel:
        """Register the files in ``source_dir`` (model files and any extras; a card.json there is
        replaced by ``card``) as the next version of ``name``. Atomic. ``run_id``: the MLflow run
        that produced the model (MLflow keeps the files as that run's artifacts)."""

    @abstractmethod
    def _write_alias(self, name: str, alias: str, version: int | None) -> None:
        """Point ``alias`` at ``version`` (None: remove it; ModelNotFound if it is not set)."""

    def annotate(
        self,
        model: RegisteredModel,
        *,
        metrics: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Add evidence to a registered version after the fact (a gate decision, per-site
        thresholds): ``metrics`` entries appear in ``card.metrics`` of later resolves; ``files``
        (name → text) are stored with the version. Returns name → where each file went."""
        return self._annotate(model, metrics or {}, files or {})

    @abstractmethod
    def _annotate(self, model: RegisteredModel, metrics: Mapping[str, Any], files: Mapping[str, str]) -> dict[str, str]:
        """:meth:`annotate` in this store (ValueError for a file name it cannot keep)."""

    @abstractmethod
    def evidence(self, model: RegisteredModel, filename: str) -> str:
        """The text of a file stored by :meth:`annotate` (FileNotFoundError if there is none)."""

    def check(self) -> None:
        """Raise RegistryUnavailable (saying why) if the store cannot be used. Cheap. A store with
        nothing to reach (a folder) is always usable."""
        return None

    # -- shared behaviour --
    def version_numbers(self, name: str) -> list[int]:
        """The registered version numbers of ``name``, ascending (nothing is loaded)."""
        return self._version_numbers(name)

    def versions(self, name: str) -> list[RegisteredModel]:
        """All versions of ``name``, oldest first (empty if unknown)."""
        aliases = self.aliases(name)
        return [self._load(name, v, aliases) for v in self._version_numbers(name)]

    def is_empty(self, name: str | None = None) -> bool:
        """No version of ``name`` (or, without a name, no model at all) is registered."""
        return not (self._version_numbers(name) if name is not None else self.names())

    def _unknown_name(self, name: str) -> ModelNotFound:
        known = ", ".join(self.names()) or "none"
        return ModelNotFound(f"no model named {name!r} in registry {self.location} (registered: {known})")

    def _pick_version(self, ref: str, numbers: list[int], aliases: Mapping[str, int]) -> int:
        name, alias, version = parse_ref(ref)
        if not numbers:
            raise self._unknown_name(name)
        if alias is not None:
            if alias == LATEST:
                return numbers[-1]
            if alias not in aliases:
                listed = ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items())) or "none"
                raise ModelNotFound(f"model {name!r} has no alias {alias!r} (aliases: {listed})")
            version = aliases[alias]
        elif version is None:
            version = aliases.get(CHAMPION, numbers[-1])
        if version not in numbers:
            raise ModelNotFound(f"model {name!r} has no version {version} (versions: {', '.join(map(str, numbers))})")
        return version

    def resolve(self, ref: str) -> RegisteredModel:
        name = parse_ref(ref)[0]
        aliases = self.aliases(name)
        return self._load(name, self._pick_version(ref, self._version_numbers(name), aliases), aliases)

    def version_of(self, ref: str) -> int:
        """The version ``ref`` points at now, without loading anything: what a serving replica
        polls to notice a promotion. One cheap query for ``NAME@ALIAS``."""
        name, alias, version = parse_ref(ref)
        if alias is not None and alias != LATEST:
            aliases = self.aliases(name)
            if alias in aliases:
                return aliases[alias]
            return self._pick_version(ref, self._version_numbers(name), aliases)  # raises the right error
        return self._pick_version(ref, self._version_numbers(name), self.aliases(name))

    def set_alias(self, name: str, alias: str, version: int) -> RegisteredModel:
        """Point ``alias`` (e.g. champion, challenger) at an existing version."""
        check_alias(alias)
        version = int(version)
        numbers = self._version_numbers(name)
        if version not in numbers:
            raise ModelNotFound(
                f"model {name!r} has no version {version} (versions: {', '.join(map(str, numbers)) or 'none'})"
            )
        self._write_alias(name, alias, version)
        return self._load(name, version, self.aliases(name))

    def remove_alias(self, name: str, alias: str) -> None:
        self._write_alias(name, alias, None)

"""Model registries: the trained versions of each model, and the aliases (champion, challenger)
that serving and the promotion gate point at.

Two implementations behind one interface (:class:`Registry`):

- :class:`ModelRegistry` — files: ``ROOT/NAME/VERSION/{model.onnx, model.pt, state_dict.pt,
  card.json, ...}`` and ``ROOT/NAME/aliases.json``. No server, no database; handy for tests,
  notebooks and air-gapped copies.
- ``models.registry_mlflow.MlflowRegistry`` — the MLflow Model Registry (the default; a local
  SQLite store under ``var/mlflow`` or a tracking server by URL). Each version's files are the
  artifacts of the run that produced it; serving reads a local copy downloaded once.

:func:`open_registry` picks one from a location: a folder → files; ``sqlite:///…``,
``postgresql://…``, ``http(s)://…``, ``databricks`` → MLflow.

Versions are 1, 2, ... and never change once registered (their files are immutable; evidence such
as a gate decision is added beside them with :meth:`Registry.annotate`). A registration is atomic:
readers (serving replicas) never see half a model.

References: ``NAME`` (the champion alias if set, else the latest version), ``NAME@ALIAS``
(``NAME@latest``: the newest version), ``NAME/VERSION``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from models.card import CARD_FILENAME, ModelCard
from models.registry_base import (  # the interface, re-exported: callers import it from here
    ALIASES_FILENAME,
    CHALLENGER,
    CHAMPION,
    DEFAULT_MLFLOW_DB,
    DEFAULT_REGISTRY_ROOT,
    DEFAULT_REGISTRY_URI,
    LATEST,
    MLFLOW_SCHEMES,
    MODEL_FILES,
    NAME_PATTERN,
    REGISTRY_ENV,
    TRACKING_URI_ENV,
    LocalFolder,
    ModelNotFound,
    RegisteredModel,
    Registry,
    RegistryUnavailable,
    absolute_location,
    atomic_write_json,
    atomic_write_text,
    check_alias,
    check_model_name,
    check_source,
    parse_ref,
    redact_uri,
    registry_kind,
)
from models.registry_mlflow import MlflowRegistry

__all__ = [
    "ALIASES_FILENAME",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MLFLOW_DB",
    "DEFAULT_REGISTRY_ROOT",
    "DEFAULT_REGISTRY_URI",
    "LATEST",
    "MLFLOW_SCHEMES",
    "MODEL_FILES",
    "REGISTRY_ENV",
    "TRACKING_URI_ENV",
    "MlflowRegistry",
    "ModelNotFound",
    "ModelRegistry",
    "RegisteredModel",
    "Registry",
    "RegistryUnavailable",
    "absolute_location",
    "check_alias",
    "check_model_name",
    "check_source",
    "copy_model",
    "default_location",
    "open_registry",
    "parse_ref",
    "redact_uri",
    "registry_kind",
]


def default_location() -> str:
    """$PREREAD_REGISTRY, else $MLFLOW_TRACKING_URI, else the local MLflow store under var/mlflow."""
    return os.environ.get(REGISTRY_ENV) or os.environ.get(TRACKING_URI_ENV) or DEFAULT_REGISTRY_URI


def open_registry(
    location: str | Path | Registry | Any | None = None,
    *,
    cache_dir: str | Path | None = None,
    artifact_root: str | None = None,
) -> Registry:
    """The registry at ``location``: a :class:`Registry` (returned as is), a folder (file registry),
    an MLflow URI, an object with ``uri`` / ``cache_dir`` / ``artifact_root`` attributes (the
    serving config's ``registry`` section), or None (:func:`default_location`).

    ``cache_dir``: where MLflow versions are downloaded (default: beside a SQLite store, else
    ``~/.cache/preread/mlflow``). ``artifact_root``: where runs created here keep their artifacts
    when the store is a database used directly (default: beside a SQLite store)."""
    if isinstance(location, Registry):
        return location
    if location is not None and not isinstance(location, (str, Path)):
        cache_dir = cache_dir or getattr(location, "cache_dir", None)
        artifact_root = artifact_root or getattr(location, "artifact_root", None)
        location = location.uri
    text = str(location) if location is not None else default_location()
    if registry_kind(location if isinstance(location, Path) else text) == "files":
        return ModelRegistry(text)
    return MlflowRegistry(text, cache_dir=cache_dir, artifact_root=artifact_root)


def copy_model(source: Registry, target: Registry, name: str) -> dict[int, int]:
    """Register every version of ``name`` from ``source`` in ``target`` (oldest first; numbers may
    change) and point the same aliases at them. Returns source version → target version."""
    moved = {model.version: target.register(name, model.path, model.card).version for model in source.versions(name)}
    for alias, version in source.aliases(name).items():
        target.set_alias(name, alias, moved[version])
    return moved


# ---- files ----------------------------------------------------------------------------------


class ModelRegistry(Registry):
    """The file registry: ROOT/NAME/VERSION folders (default ROOT: $PREREAD_REGISTRY or var/registry)."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            root = os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_ROOT
        self.root = Path(root)
        self.location = str(self.root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ---- reading --------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and NAME_PATTERN.match(p.name) and self._version_numbers(p.name)
        )

    def _version_numbers(self, name: str) -> list[int]:
        directory = self.root / name
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / CARD_FILENAME).is_file())

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / ALIASES_FILENAME
        if not path.is_file():
            return {}
        return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}

    def _load(self, name: str, version: int, aliases: Mapping[str, int] | None = None) -> RegisteredModel:
        path = self.root / name / str(version)
        card = ModelCard.load(path / CARD_FILENAME)
        aliases = self.aliases(name) if aliases is None else aliases
        run_id = card.training_run.run_id if card.training_run is not None else None
        return RegisteredModel(
            name=name,
            version=version,
            card=card,
            fetch=LocalFolder(path),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            run_id=run_id,
        )

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise RegistryUnavailable(f"registry folder {self.root} is not a folder")

    # ---- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Serialise writers of one model name across processes (alias read-modify-write)."""
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as handle:
            try:
                import fcntl  # noqa: PLC0415 - POSIX only; the ImportError below is the fallback

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # not POSIX: single-writer use only
                pass
            yield

    def register(
        self, name: str, source_dir: str | Path, card: ModelCard, *, run_id: str | None = None
    ) -> RegisteredModel:
        """Copy ``source_dir`` in as the next version of ``name`` (``run_id`` is only recorded on
        the card by whoever tracks the run).

        The card is written with ``name`` and the assigned version. Atomic: the copy is assembled
        in a temporary directory and renamed to ROOT/NAME/VERSION; a concurrent registration that
        took the same number makes this one move on to the next.
        """
        check_model_name(name)
        source_dir = check_source(source_dir)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".incoming-{uuid.uuid4().hex}"
        try:
            shutil.copytree(source_dir, staging, ignore=shutil.ignore_patterns(CARD_FILENAME, ".*"))
            version = (self._version_numbers(name) or [0])[-1] + 1
            while True:
                final_card = card.model_copy(update={"name": name, "version": version})
                final_card.save(staging / CARD_FILENAME)
                try:
                    os.rename(staging, directory / str(version))
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not (directory / str(version)).exists():
                        raise
                    version += 1
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._load(name, version)

    def _write_alias(self, name: str, alias: str, version: int | None) -> None:
        with self._locked(name):
            aliases = self.aliases(name)
            if version is None:
                if alias not in aliases:
                    raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
                del aliases[alias]
            else:
                aliases[alias] = version
            atomic_write_json(self.root / name / ALIASES_FILENAME, aliases)

    def _annotate(self, model: RegisteredModel, metrics: Mapping[str, Any], files: Mapping[str, str]) -> dict[str, str]:
        """Files go into the version's folder; metrics into its card.json."""
        directory = self.root / model.name / str(model.version)
        where = {}
        with self._locked(model.name):
            for filename, text in files.items():
                if Path(filename).name != filename or filename in (CARD_FILENAME, *MODEL_FILES):
                    raise ValueError(f"cannot store evidence as {filename!r}")
                atomic_write_text(directory / filename, text)
                where[filename] = str(directory / filename)
            if metrics:
                card = ModelCard.load(directory)
                card.model_copy(update={"metrics": {**card.metrics, **metrics}}).save(directory)
        return where

    def evidence(self, model: RegisteredModel, filename: str) -> str:
        return (self.root / model.name / str(model.version) / Path(filename).name).read_text(encoding="utf-8")

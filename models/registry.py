"""A file-based model registry.

Layout::

    ROOT/NAME/VERSION/{model.onnx, model.pt, state_dict.pt, card.json, ...}
    ROOT/NAME/aliases.json      {"champion": 2, "challenger": 3}

ROOT defaults to ``var/registry`` (relative to the working directory) or ``$PREREAD_REGISTRY``.
Versions are 1, 2, ... and never change once written: a registration is assembled in a hidden
temporary directory beside the versions and renamed into place, so readers (serving replicas)
never see half a model. An MLflow-backed registry can replace this one behind the same methods.

References: ``NAME`` (the champion alias if set, else the latest version), ``NAME@ALIAS``,
``NAME/VERSION``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from models.card import CARD_FILENAME, ModelCard

REGISTRY_ENV = "PREREAD_REGISTRY"
DEFAULT_REGISTRY_ROOT = Path("var") / "registry"
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES_FILENAME = "aliases.json"
MODEL_FILES = ("model.onnx", "model.pt", "state_dict.pt")

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_RESERVED_ALIASES = {"latest"}


class ModelNotFound(KeyError):
    """No model matches a reference (unknown name, version or alias, or a malformed reference)."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else "model not found"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    path: Path
    card: ModelCard
    aliases: tuple[str, ...] = field(default=())

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
            raise ModelNotFound(f"invalid model reference {ref!r}: the version after '/' must be a positive integer "
                                "(use NAME, NAME@ALIAS or NAME/VERSION)")
        version = int(raw_version)
    if not _NAME_PATTERN.match(name) or (alias is not None and not alias):
        raise ModelNotFound(f"invalid model reference {ref!r} (use NAME, NAME@ALIAS or NAME/VERSION)")
    return name, alias, version


def _atomic_write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class ModelRegistry:
    def __init__(self, root: str | Path | None = None):
        if root is None:
            root = os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_ROOT
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ---- reading --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Model names with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME_PATTERN.match(p.name) and self._version_numbers(p.name))

    def _version_numbers(self, name: str) -> list[int]:
        directory = self.root / name
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir()
                      if p.name.isdigit() and (p / CARD_FILENAME).is_file())

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / ALIASES_FILENAME
        if not path.is_file():
            return {}
        return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}

    def _load(self, name: str, version: int, aliases: dict[str, int] | None = None) -> RegisteredModel:
        path = self.root / name / str(version)
        card = ModelCard.load(path / CARD_FILENAME)
        aliases = self.aliases(name) if aliases is None else aliases
        return RegisteredModel(name=name, version=version, path=path, card=card,
                               aliases=tuple(sorted(a for a, v in aliases.items() if v == version)))

    def versions(self, name: str) -> list[RegisteredModel]:
        """All versions of ``name``, oldest first (empty if unknown)."""
        aliases = self.aliases(name)
        return [self._load(name, v, aliases) for v in self._version_numbers(name)]

    def is_empty(self, name: str | None = None) -> bool:
        """No version of ``name`` (or, without a name, no model at all) is registered."""
        return not (self._version_numbers(name) if name is not None else self.names())

    def resolve(self, ref: str) -> RegisteredModel:
        name, alias, version = parse_ref(ref)
        numbers = self._version_numbers(name)
        if not numbers:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(f"no model named {name!r} in registry {self.root} (registered: {known})")
        aliases = self.aliases(name)
        if alias is not None:
            if alias == "latest":
                version = numbers[-1]
            elif alias not in aliases:
                listed = ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items())) or "none"
                raise ModelNotFound(f"model {name!r} has no alias {alias!r} (aliases: {listed})")
            else:
                version = aliases[alias]
        elif version is None:
            version = aliases.get(CHAMPION, numbers[-1])
        if version not in numbers:
            raise ModelNotFound(f"model {name!r} has no version {version} (versions: {', '.join(map(str, numbers))})")
        return self._load(name, version, aliases)

    # ---- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Serialise writers of one model name across processes (alias read-modify-write)."""
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # not POSIX: single-writer use only
                pass
            yield

    def register(self, name: str, source_dir: str | Path, card: ModelCard) -> RegisteredModel:
        """Copy ``source_dir`` (model files and any extras) in as the next version of ``name``.

        The card is written with ``name`` and the assigned version. Atomic: the copy is assembled
        in a temporary directory and renamed to ROOT/NAME/VERSION; a concurrent registration that
        took the same number makes this one move on to the next.
        """
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
        source_dir = Path(source_dir)
        if not source_dir.is_dir():
            raise FileNotFoundError(f"model source directory {source_dir} not found")
        if not any((source_dir / f).is_file() for f in MODEL_FILES):
            raise ValueError(f"{source_dir} holds none of {', '.join(MODEL_FILES)}")
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

    def set_alias(self, name: str, alias: str, version: int) -> RegisteredModel:
        """Point ``alias`` (e.g. champion, challenger) at an existing version."""
        if not _ALIAS_PATTERN.match(alias) or alias in _RESERVED_ALIASES:
            raise ValueError(f"invalid alias {alias!r}: starts with a letter; letters, digits, '.', '_', '-'; not 'latest'")
        version = int(version)
        if version not in self._version_numbers(name):
            raise ModelNotFound(f"model {name!r} has no version {version} "
                                f"(versions: {', '.join(map(str, self._version_numbers(name))) or 'none'})")
        with self._locked(name):
            aliases = self.aliases(name)
            aliases[alias] = version
            _atomic_write_json(self.root / name / ALIASES_FILENAME, aliases)
        return self._load(name, version)

    def remove_alias(self, name: str, alias: str) -> None:
        with self._locked(name):
            aliases = self.aliases(name)
            if alias not in aliases:
                raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
            del aliases[alias]
            _atomic_write_json(self.root / name / ALIASES_FILENAME, aliases)

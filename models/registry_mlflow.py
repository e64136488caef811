"""The MLflow Model Registry behind ``models.registry.Registry``.

- Registered models are named as ours (``ecg``, ``cxr``); versions are MLflow's version numbers;
  ``champion`` / ``challenger`` are MLflow aliases (``models:/ecg@champion`` in MLflow's terms).
- A version's files (model.onnx, model.pt, state_dict.pt, card.json) are artifacts of the run
  that produced it — the training run when ``preread train`` tracks one, else a registration run —
  under ``model/``; the version's source is ``runs:/RUN/model``. Key card fields are version tags
  and the intended use is its description, so the MLflow UI shows what a version is.
- Versions never change, so each is downloaded once into ``cache_dir/NAME/VERSION-KEY``
  (atomically: assembled beside it and renamed; KEY ties the copy to the run, so a recreated store
  never serves a stale copy). Cards are fetched alone for listings.
- Evidence added later (a gate decision, site thresholds) goes to version tags
  (``preread.metrics.KEY``, merged into ``card.metrics``) and to artifacts of the version's run
  under ``evidence/``.

Works against a local SQLite store (the default, ``var/mlflow/mlflow.db`` with artifacts in
``var/mlflow/artifacts``), a database used directly, or a tracking server by URL.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from models.card import CARD_FILENAME, ModelCard
from models.mlflow_store import artifact_root_uri, check_store, default_artifact_root, ensure_experiment, sqlite_path
from models.registry_base import (
    MODEL_FILES,
    ModelNotFound,
    RegisteredModel,
    Registry,
    RegistryUnavailable,
    absolute_location,
    check_model_name,
    check_source,
    redact_uri,
)

log = logging.getLogger(__name__)

MODEL_ARTIFACT_PATH = "model"
EVIDENCE_ARTIFACT_PATH = "evidence"
METRICS_TAG_PREFIX = "preread.metrics."
EVIDENCE_TAG_PREFIX = "preread.evidence."
CARD_TAG = "preread.card"  # marks versions registered by preread (their files include the card)
MAX_TAG_VALUE = 100_000  # MLflow's limit for model version tag values
T = TypeVar("T")


def experiment_name(task: str) -> str:
    """The experiment that holds a task's training and registration runs."""
    return f"preread-{task}"


def flatten(prefix: str, value: Any) -> Iterable[tuple[str, str]]:
    """Nested config values as ``a.b.c`` → text (lists as JSON), for MLflow parameters."""
    if isinstance(value, Mapping):
        if not value and prefix:
            yield prefix, "{}"
        for key, inner in value.items():
            yield from flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, (list, tuple)):
        yield prefix, json.dumps(value)
    else:
        yield prefix, str(value)


def numbers(prefix: str, value: Any) -> Iterable[tuple[str, float]]:
    """(``a/b``, number) pairs of nested dicts of numbers (None, NaN, text and lists skipped): how
    per-label metrics become MLflow metrics such as ``val_auroc/AF``."""
    if isinstance(value, bool):
        yield prefix, float(value)
    elif isinstance(value, (int, float)):
        if value == value and abs(value) != float("inf"):
            yield prefix, float(value)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from numbers(f"{prefix}/{key}" if prefix else str(key), inner)


def card_tags(card: ModelCard) -> dict[str, str]:
    """The card fields worth seeing in the MLflow UI's version list, as version tags."""
    tags = {
        "task": card.task,
        "architecture": card.architecture,
        "demo": str(card.demo).lower(),
        "labels": ",".join(card.labels),
        "data_fingerprint": card.training_data.fingerprint_sha256,
        "data_source": card.training_data.source or "",
        CARD_TAG: CARD_FILENAME,
    }
    for key in ("val_macro_auroc", "test_macro_auroc", "onnx_parity_max_abs_diff", "torchscript_parity_max_abs_diff"):
        value = card.metrics.get(key)
        if isinstance(value, (int, float)):
            tags[key] = f"{value:.6g}"
    return tags


def _cache_key(version) -> str:
    """Identifies exactly one registered artifact set, even across a store that was recreated."""
    text = f"{version.run_id}|{version.source}|{version.creation_timestamp}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class MlflowRegistry(Registry):
    def __init__(self, uri: str, *, cache_dir: str | Path | None = None, artifact_root: str | Path | None = None):
        self.uri = absolute_location(uri)
        self.location = redact_uri(self.uri)
        db = sqlite_path(self.uri)
        if cache_dir is None:
            cache_dir = db.parent / "cache" if db is not None else Path.home() / ".cache" / "preread" / "mlflow"
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self.artifact_root = artifact_root_uri(artifact_root) or default_artifact_root(self.uri)
        self._client = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.location!r})"

    @property
    def client(self):
        if self._client is None:
            check_store(self.uri)
            from mlflow import MlflowClient  # noqa: PLC0415 - heavy; loaded when the MLflow store is first used

            self._client = self.call(lambda: MlflowClient(tracking_uri=self.uri, registry_uri=self.uri))
        return self._client

    def call(self, fn: Callable[[], T], missing: Callable[[], T] | None = None) -> T:
        """Run one MLflow call (the tracking runs of training/ and evaluation/ use it too): 'does not
        exist' → ``missing()`` (or re-raised if None); a store that fails → RegistryUnavailable naming it."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 - heavy; loaded when the MLflow store is first used

        try:
            return fn()
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and missing is not None:
                return missing()
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
                raise
            raise RegistryUnavailable(f"MLflow registry {self.location}: {exc.message}") from exc
        except (OSError, ImportError) as exc:
            raise RegistryUnavailable(f"MLflow registry {self.location}: {exc}") from exc
        except Exception as exc:  # SQLAlchemy errors of a broken database, HTTP errors ...
            if type(exc).__module__.split(".")[0] in ("sqlalchemy", "requests", "urllib3", "alembic"):
                raise RegistryUnavailable(f"MLflow registry {self.location}: {exc}") from exc
            raise

    def check(self) -> None:
        self.call(lambda: self.client.search_registered_models(max_results=1))

    # ---- reading --------------------------------------------------------------------------

    def _all_versions(self, filter_string: str | None) -> list:
        found, token = [], None
        while True:
            page = self.call(functools.partial(self.client.search_model_versions, filter_string, page_token=token))
            found.extend(page)
            token = page.token
            if not token:
                return found

    def names(self) -> list[str]:
        """Models with a version registered by preread (a shared server may hold others' models)."""
        return sorted({v.name for v in self._all_versions(None) if (v.tags or {}).get(CARD_TAG) == CARD_FILENAME})

    def _version_numbers(self, name: str) -> list[int]:
        return sorted(int(v.version) for v in self._all_versions(f"name = '{name}'"))

    def aliases(self, name: str) -> dict[str, int]:
        model = self.call(lambda: self.client.get_registered_model(name), missing=lambda: None)
        return {} if model is None else {str(a): int(v) for a, v in (model.aliases or {}).items()}

    def _load(self, name: str, version: int, aliases: Mapping[str, int]) -> RegisteredModel:
        found = self.call(lambda: self.client.get_model_version(name, str(version)), missing=lambda: None)
        if found is None:
            raise ModelNotFound(f"model {name!r} has no version {version} in registry {self.location}")
        return self._registered(found, aliases)

    def versions(self, name: str) -> list[RegisteredModel]:
        aliases = self.aliases(name)
        return [
            self._registered(v, aliases)
            for v in sorted(self._all_versions(f"name = '{name}'"), key=lambda v: int(v.version))
        ]

    def _registered(self, found, aliases: Mapping[str, int]) -> RegisteredModel:
        name, version = found.name, int(found.version)
        card = self._card(found)
        annotations = {
            key.removeprefix(METRICS_TAG_PREFIX): json.loads(value)
            for key, value in (found.tags or {}).items()
            if key.startswith(METRICS_TAG_PREFIX)
        }
        card = card.model_copy(update={"name": name, "version": version, "metrics": {**card.metrics, **annotations}})
        return RegisteredModel(
            name=name,
            version=version,
            card=card,
            fetch=functools.partial(self._download, found),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            run_id=found.run_id or None,
        )

    def _local_dir(self, found) -> Path:
        return self.cache_dir / found.name / f"{found.version}-{_cache_key(found)}"

    def _fetch(self, artifact_uri: str, into: Path) -> Path:
        import mlflow.artifacts  # noqa: PLC0415 - heavy; loaded when the MLflow store is first used

        return Path(
            self.call(
                lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=artifact_uri, dst_path=str(into), tracking_uri=self.uri, registry_uri=self.uri
                )
            )
        )

    def _card(self, found) -> ModelCard:
        """The version's card: from the local copy if downloaded, else the card alone (cached)."""
        local = self._local_dir(found) / CARD_FILENAME
        if local.is_file():
            return ModelCard.load(local)
        cached = self.cache_dir / found.name / ".cards" / f"{found.version}-{_cache_key(found)}.json"
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
                try:
                    fetched = self._fetch(f"{found.source.rstrip('/')}/{CARD_FILENAME}", Path(tmp))
                except Exception:
                    if not self._has_card(found):
                        raise ModelNotFound(
                            f"{found.name}/{found.version} in {self.location} has no {CARD_FILENAME}: it was not "
                            "registered by preread (register a model folder with `preread models register`)"
                        ) from None
                    raise
                os.replace(fetched, cached)
        return ModelCard.load(cached)

    def _has_card(self, found) -> bool:
        import mlflow.artifacts  # noqa: PLC0415 - heavy; loaded when the MLflow store is first used

        listed = self.call(lambda: mlflow.artifacts.list_artifacts(artifact_uri=found.source, tracking_uri=self.uri))
        return any(Path(info.path).name == CARD_FILENAME for info in listed)

    def _download(self, found) -> Path:
        """The version's files in the local cache, downloaded once (atomically)."""
        final = self._local_dir(found)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        incoming = final.parent / f".incoming-{uuid.uuid4().hex}"
        incoming.mkdir()
        try:
            fetched = self._fetch(found.source, incoming)
            if not any((fetched / f).is_file() for f in MODEL_FILES):
                raise ModelNotFound(
                    f"{found.name}/{found.version} in {self.location} holds none of "
                    f"{', '.join(MODEL_FILES)} at {found.source}"
                )
            card = ModelCard.load(fetched)  # the copy's card says which version it is, as the file registry's does
            card.model_copy(update={"name": found.name, "version": int(found.version)}).save(fetched)
            try:
                os.rename(fetched, final)
            except OSError:
                if not final.is_dir():  # not a concurrent download that won the race
                    raise
            log.info("downloaded %s/%s from %s to %s", found.name, found.version, self.location, final)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return final

    # ---- writing --------------------------------------------------------------------------

    def _free_artifact_path(self, run_id: str) -> str:
        taken = {Path(info.path).name for info in self.call(lambda: self.client.list_artifacts(run_id))}
        path, n = MODEL_ARTIFACT_PATH, 1
        while path in taken:
            n += 1
            path = f"{MODEL_ARTIFACT_PATH}-{n}"
        return path

    def start_run(self, experiment: str, run_name: str, tags: Mapping[str, str] | None = None):
        """A new run (its RunInfo) in ``experiment``, created if missing (artifacts under the
        artifact root for a database store)."""
        experiment_id = self.call(lambda: ensure_experiment(self.client, experiment, self.artifact_root))
        return self.call(lambda: self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))).info

    def register(
        self, name: str, source_dir: str | Path, card: ModelCard, *, run_id: str | None = None
    ) -> RegisteredModel:
        """Upload ``source_dir`` as artifacts of ``run_id`` (else of a new registration run) and
        create the version from them. Nothing is registered unless every file was uploaded."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 - heavy; loaded when the MLflow store is first used

        check_model_name(name)
        source_dir = check_source(source_dir)
        own_run = run_id is None
        if own_run:
            run_id = self.start_run(
                experiment_name(card.task),
                f"register {name}",
                {"mlflow.source.name": "preread models register", "preread.source": str(source_dir)},
            ).run_id
        try:
            with tempfile.TemporaryDirectory(prefix="preread-register-") as tmp:
                staging = Path(tmp) / MODEL_ARTIFACT_PATH
                shutil.copytree(source_dir, staging, ignore=shutil.ignore_patterns(CARD_FILENAME, ".*"))
                card.model_copy(update={"name": name, "version": None}).save(staging / CARD_FILENAME)
                artifact_path = self._free_artifact_path(run_id)
                self.call(lambda: self.client.log_artifacts(run_id, str(staging), artifact_path))
            try:
                self.call(
                    lambda: self.client.create_registered_model(
                        name, description=f"preread {card.task} model; versions carry their card ({CARD_FILENAME})"
                    )
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            created = self.call(
                lambda: self.client.create_model_version(
                    name,
                    f"runs:/{run_id}/{artifact_path}",
                    run_id=run_id,
                    tags=card_tags(card),
                    description=card.intended_use,
                )
            )
        except BaseException:
            if own_run:
                self.call(lambda: self.client.set_terminated(run_id, "FAILED"))
            raise
        if own_run:
            self.call(lambda: self.client.set_terminated(run_id, "FINISHED"))
        log.info("registered %s/%s in %s (run %s)", name, created.version, self.location, run_id)
        return self._load(name, int(created.version), self.aliases(name))

    def _write_alias(self, name: str, alias: str, version: int | None) -> None:
        if version is not None:
            self.call(lambda: self.client.set_registered_model_alias(name, alias, str(version)))
            return
        if alias not in self.aliases(name):
            raise ModelNotFound(f"model {name!r} has no alias {alias!r}")
        self.call(lambda: self.client.delete_registered_model_alias(name, alias))

    def _annotate(self, model: RegisteredModel, metrics: Mapping[str, Any], files: Mapping[str, str]) -> dict[str, str]:
        """Files become artifacts of the version's run under ``evidence/`` (a version tag points at
        each); metrics become ``preread.metrics.KEY`` version tags (JSON)."""
        if model.run_id is None:
            raise ValueError(f"{model.ref} has no MLflow run to keep evidence with")
        where = {}
        for filename, text in files.items():
            if Path(filename).name != filename:
                raise ValueError(f"cannot store evidence as {filename!r}")
            artifact_file = f"{EVIDENCE_ARTIFACT_PATH}/{model.name}-v{model.version}/{filename}"
            self.call(functools.partial(self.client.log_text, model.run_id, text, artifact_file))
            self._set_version_tag(model, EVIDENCE_TAG_PREFIX + filename, artifact_file)
            where[filename] = f"runs:/{model.run_id}/{artifact_file}"
        for key, value in metrics.items():
            encoded = json.dumps(value, default=str)
            if len(encoded) > MAX_TAG_VALUE:
                raise ValueError(
                    f"card.metrics[{key!r}] is {len(encoded)} characters as JSON; MLflow keeps at most "
                    f"{MAX_TAG_VALUE} per version tag (store it as a file instead)"
                )
            self._set_version_tag(model, METRICS_TAG_PREFIX + key, encoded)
        return where

    def _set_version_tag(self, model: RegisteredModel, key: str, value: str) -> None:
        self.call(functools.partial(self.client.set_model_version_tag, model.name, str(model.version), key, value))

    def evidence(self, model: RegisteredModel, filename: str) -> str:
        found = self.call(lambda: self.client.get_model_version(model.name, str(model.version)))
        artifact_file = (found.tags or {}).get(EVIDENCE_TAG_PREFIX + filename)
        if artifact_file is None or not found.run_id:
            raise FileNotFoundError(f"{model.ref} has no evidence file {filename!r} in {self.location}")
        with tempfile.TemporaryDirectory(prefix="preread-evidence-") as tmp:
            return self._fetch(f"runs:/{found.run_id}/{artifact_file}", Path(tmp)).read_text(encoding="utf-8")

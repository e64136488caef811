"""Experiment tracking of training runs on MLflow: every `preread train` is one MLflow run.

What a run holds:

- parameters: the validated training config, flattened (``optim.lr``, ``model.width`` ...);
- per-epoch metrics (step = epoch): ``train_loss``, ``val_loss``, ``val_macro_auroc``, ``lr``,
  ``val_auroc/<label>`` — logged as each epoch ends, so a long run can be watched in the MLflow UI;
- the model's final figures as ``model/<metric>`` (best weights: validation AUROC per label,
  operating points, test AUROC, ONNX/TorchScript parity differences);
- artifacts: ``config/`` (the YAML as given and as validated), ``card.json``, ``curves/`` (loss
  and AUROC against epoch, PNG), and — with the MLflow registry — ``model/``, the registered files;
- tags: the data fingerprint, the git commit, the registered model and version.

The registered version points back at its run (``card.training_run`` and, in MLflow, the
version's run id), and with the MLflow registry the version's files *are* the run's artifacts.

Failure rules: an unreachable or unusable tracking store stops `preread train` *before* training
(``TrackingError``); once training runs, a failed metric or artifact upload is logged and
training goes on; a registration that fails keeps the exported model on disk and says how to
register it (``RegistrationFailed``) — a trained model is never lost to a tracking problem.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from models.card import ModelCard, TrackingRun
from models.registry import (
    DEFAULT_REGISTRY_URI,
    TRACKING_URI_ENV,
    RegisteredModel,
    Registry,
    RegistryUnavailable,
    absolute_location,
    open_registry,
    redact_uri,
)
from models.registry_mlflow import MlflowRegistry, experiment_name, flatten, numbers
from training.config import TrainConfig

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
MAX_BATCH = 100  # MLflow accepts at most 100 params or 1000 metrics per log_batch call
NOT_PER_EPOCH = ("history",)  # card.metrics entries already logged epoch by epoch


class TrackingError(RuntimeError):
    """The tracking store cannot be used: raised before training starts."""


class RegistrationFailed(RuntimeError):
    """Training finished but the model could not be registered; the message says where it is kept."""


def tracking_uri(config: TrainConfig, registry: Registry) -> str:
    """Where the run goes: the MLflow registry's own store (its versions are the runs' artifacts),
    else ``tracking.uri``, $MLFLOW_TRACKING_URI or the local default store."""
    if isinstance(registry, MlflowRegistry):
        if config.tracking.uri and absolute_location(config.tracking.uri) != registry.uri:
            raise TrackingError(
                f"tracking.uri {redact_uri(config.tracking.uri)} differs from the MLflow registry {registry.location}: "
                "a registered version's files are artifacts of its training run, so both must be one store "
                "(leave tracking.uri unset)"
            )
        return registry.uri
    return absolute_location(config.tracking.uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_REGISTRY_URI)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def plot_curves(history: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Loss and AUROC against epoch, as PNGs in ``out_dir``."""
    # Figures of their own, not pyplot: no process-global backend switch or figure registry in a
    # training process that may be a Ray worker or a notebook.
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib is heavy: loaded when a run's curves are drawn
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - matplotlib, on demand

    epochs = [entry["epoch"] for entry in history]
    written = []
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        axis.plot(epochs, [entry.get(key) for entry in history], marker="o", label=label)
    axis.set(xlabel="epoch", ylabel="loss (weighted BCE)", title="Loss")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend()
    figure.tight_layout()
    written.append(out_dir / "loss.png")
    figure.savefig(written[-1], dpi=120)

    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    labels = sorted({code for entry in history for code in (entry.get("val_auroc") or {})})
    for code in labels:
        values = [(entry.get("val_auroc") or {}).get(code) for entry in history]
        axis.plot(epochs, [float("nan") if v is None else v for v in values], linewidth=0.8, alpha=0.6, label=code)
    axis.plot(
        epochs,
        [entry.get("val_macro_auroc") for entry in history],
        color="black",
        linewidth=2.5,
        marker="o",
        label="macro",
    )
    axis.set(xlabel="epoch", ylabel="validation AUROC", title="Validation AUROC", ylim=(0.0, 1.0))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    written.append(out_dir / "auroc.png")
    figure.savefig(written[-1], dpi=120)
    return written


class TrainingRun:
    """One tracked training run. ``start`` it before training (fails loudly), pass
    ``on_epoch_end`` and ``registry(...)`` to the trainer, then ``finish`` (or ``fail``)."""

    def __init__(self, store: MlflowRegistry, run_id: str, experiment_id: str, experiment: str, config: TrainConfig):
        self.store, self.run_id, self.experiment_id, self.experiment = store, run_id, experiment_id, experiment
        self.config = config
        self.logged_epochs: set[int] = set()
        self._warned = False

    @property
    def client(self):
        return self.store.client

    @property
    def link(self) -> TrackingRun:
        return TrackingRun(
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            experiment=self.experiment,
            tracking_uri=self.store.location,
        )

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        registry: Registry,
        config_path: str | Path | None = None,
        source: str = "preread train",
    ) -> TrainingRun:
        """Create the run and log the config; TrackingError (saying what to do) if the store fails."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 - MLflow is heavy: loaded when tracking

        uri = tracking_uri(config, registry)
        store = registry if isinstance(registry, MlflowRegistry) else MlflowRegistry(uri)
        experiment = config.tracking.experiment or experiment_name(config.task)
        run_name = config.tracking.run_name or (
            f"{config.model.architecture} {config.data.source} {time.strftime('%Y-%m-%d %H:%M')}"
        )
        tags = {
            "mlflow.source.name": f"{source} {config.task}",
            "mlflow.source.type": "LOCAL",
            "preread.task": config.task,
        }
        try:
            tags["mlflow.user"] = getpass.getuser()
        except (KeyError, OSError):  # a container user without a passwd entry
            pass
        commit = _git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if config_path is not None:
            tags["preread.config"] = str(config_path)
        try:
            store.check()
            info = store.start_run(experiment, run_name, tags)
            run = cls(store, info.run_id, info.experiment_id, experiment, config)
            run._log_config(config_path)
        except (RegistryUnavailable, MlflowException) as exc:
            raise TrackingError(
                f"experiment tracking: {exc}. Training was not started; fix the tracking store, "
                "or set tracking.enabled: false in the training config"
            ) from None
        log.info("tracking run %s in experiment %s at %s", run.run_id, experiment, store.location)
        return run

    # ---- during training ----------------------------------------------------------------

    def _log_config(self, config_path: str | Path | None) -> None:
        from mlflow.entities import Param  # noqa: PLC0415 - MLflow is heavy: loaded when tracking

        params = [Param(key, value) for key, value in flatten("", self.config.model_dump(mode="json"))]
        for start in range(0, len(params), MAX_BATCH):
            chunk = params[start : start + MAX_BATCH]
            self.store.call(lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk))
        with tempfile.TemporaryDirectory(prefix="preread-config-") as tmp:
            validated = Path(tmp) / "validated.yaml"
            validated.write_text(yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
            self.store.call(lambda: self.client.log_artifact(self.run_id, str(validated), "config"))
            if config_path is not None and Path(config_path).is_file():
                self.store.call(lambda: self.client.log_artifact(self.run_id, str(config_path), "config"))

    def _quietly(self, what: str, action: Callable[[], Any]) -> None:
        """Tracking must never cost a trained model: a failed upload is a warning (once)."""
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - any tracking failure is a warning, never a lost model
            if not self._warned:
                log.warning(
                    "experiment tracking: %s failed (%s); training goes on, later failures are not repeated", what, exc
                )
                self._warned = True

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """The ``on_epoch_end`` callback of train_ecg / train_cxr: one epoch's metrics at step = epoch."""
        from mlflow.entities import Metric  # noqa: PLC0415 - MLflow is heavy: loaded when tracking

        step = int(metrics.get("epoch", epoch + 1))
        now = int(time.time() * 1000)
        batch = [Metric(key, value, now, step) for key, value in numbers("", metrics) if key != "epoch"]
        self._quietly(f"logging epoch {step}", lambda: self.client.log_batch(self.run_id, metrics=batch))
        self.logged_epochs.add(step)

    def registry(self, inner: Registry) -> TrackedRegistry:
        return TrackedRegistry(inner, self)

    # ---- after training ------------------------------------------------------------------

    def log_card(self, card: ModelCard) -> None:
        """The card and the model's figures (what the registration will carry)."""
        from mlflow.entities import Metric  # noqa: PLC0415 - MLflow is heavy: loaded when tracking

        now = int(time.time() * 1000)
        history = card.metrics.get("history") or []
        missed = [entry for entry in history if entry.get("epoch") not in self.logged_epochs]  # e.g. before a resume
        batch = [
            Metric(key, value, now, int(entry["epoch"]))
            for entry in missed
            for key, value in numbers("", entry)
            if key != "epoch"
        ]
        final = {k: v for k, v in card.metrics.items() if k not in NOT_PER_EPOCH}
        batch += [Metric(key, value, now, 0) for key, value in numbers("model", final)]
        for start in range(0, len(batch), 1000):
            self._quietly(
                "logging the model's metrics",
                lambda chunk=batch[start : start + 1000]: self.client.log_batch(self.run_id, metrics=chunk),
            )
        data = card.training_data
        for key, value in {
            "preread.data.fingerprint_sha256": data.fingerprint_sha256,
            "preread.data.description": data.description[:5000],
            "preread.data.n_train": str(data.n_train),
            "preread.data.n_val": str(data.n_val),
            "preread.demo": str(card.demo).lower(),
        }.items():
            self._quietly("tagging the run", lambda k=key, v=value: self.client.set_tag(self.run_id, k, v))
        self._quietly(
            "storing the card", lambda: self.client.log_text(self.run_id, card.model_dump_json(indent=2), "card.json")
        )
        if history:
            with tempfile.TemporaryDirectory(prefix="preread-curves-") as tmp:
                self._quietly(
                    "plotting the curves",
                    lambda: [
                        self.client.log_artifact(self.run_id, str(p), "curves") for p in plot_curves(history, Path(tmp))
                    ],
                )

    def keep_unregistered(self, source_dir: Path, card: ModelCard) -> Path:
        """Copy an exported model that could not be registered to checkpoint_dir/unregistered/."""
        kept = Path(self.config.checkpoint_dir).resolve() / "unregistered" / f"{card.name}-{self.run_id[:12]}"
        if kept.exists():
            shutil.rmtree(kept)
        shutil.copytree(source_dir, kept)
        card.save(kept)
        return kept

    def finish(self, registered: RegisteredModel) -> None:
        for key, value in {
            "preread.registered_model": registered.name,
            "preread.registered_version": str(registered.version),
        }.items():
            self._quietly("tagging the run", lambda k=key, v=value: self.client.set_tag(self.run_id, k, v))
        self._quietly("closing the run", lambda: self.client.set_terminated(self.run_id, "FINISHED"))
        log.info("run %s finished: registered %s", self.run_id, registered.ref)

    def fail(self, error: BaseException) -> None:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self._quietly(
            "tagging the run",
            lambda: self.client.set_tag(self.run_id, "preread.error", f"{type(error).__name__}: {error}"[:5000]),
        )
        self._quietly("closing the run", lambda: self.client.set_terminated(self.run_id, status))


class TrackedRegistry:
    """The registry as a trainer sees it during a tracked run: ``register`` links the version to the
    run (card.training_run; in the same MLflow store, the run's artifacts are the version's files),
    logs the card first, and never loses the model if registration fails. Everything else is the
    registry's own."""

    def __init__(self, inner: Registry, run: TrainingRun):
        self.inner, self.run = inner, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def register(
        self, name: str, source_dir: str | Path, card: ModelCard, *, run_id: str | None = None
    ) -> RegisteredModel:
        card = card.model_copy(update={"training_run": self.run.link})
        self.run.log_card(card)
        same_store = isinstance(self.inner, MlflowRegistry) and self.inner.uri == self.run.store.uri
        try:
            return self.inner.register(name, source_dir, card, run_id=self.run.run_id if same_store else run_id)
        except Exception as exc:
            kept = self.run.keep_unregistered(Path(source_dir), card.model_copy(update={"name": name}))
            raise RegistrationFailed(
                f"the model trained and passed its export checks, but registering it in {self.inner.location} "
                f"failed ({exc}). It is kept at {kept}; register it with `preread models register {kept}` "
                "once the registry is back"
            ) from exc


def train_tracked(
    config: TrainConfig,
    registry: Registry | str | Path | None,
    train: Callable[..., RegisteredModel],
    *,
    config_path: str | Path | None = None,
    source: str = "preread train",
    **train_kwargs: Any,
) -> RegisteredModel:
    """``train(config, registry=..., on_epoch_end=..., **train_kwargs)`` (train_ecg, train_cxr, or
    any trainer with that signature) as a tracked run, unless ``config.tracking.enabled`` is off.
    The registry and the tracking store are checked before training starts."""
    registry = open_registry(registry)
    registry.check()
    if not config.tracking.enabled:
        return train(config, registry=registry, **train_kwargs)
    run = TrainingRun.start(config, registry, config_path, source=source)
    callback = train_kwargs.pop("on_epoch_end", None)

    def on_epoch_end(epoch: int, metrics: dict[str, Any]) -> None:
        run.log_epoch(epoch, metrics)
        if callback is not None:
            callback(epoch, metrics)

    try:
        registered = train(config, registry=run.registry(registry), on_epoch_end=on_epoch_end, **train_kwargs)
    except BaseException as exc:
        run.fail(exc)
        raise
    run.finish(registered)
    return registered

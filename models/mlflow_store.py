"""Where an MLflow store is and whether it can be used: the SQLite file of a ``sqlite:///`` URI,
where its runs keep artifacts, the experiment a run goes into, and a fast check that fails saying
what to do (MLflow's own client retries an unreachable server for minutes).
"""

from __future__ import annotations

from pathlib import Path

from models.registry_base import RegistryUnavailable, redact_uri

HEALTH_TIMEOUT_S = 5.0


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if raw.startswith(":memory:") or not raw else Path(raw if raw.startswith("/") else raw)


def default_artifact_root(uri: str) -> str | None:
    """Where runs created through a database store keep artifacts: beside a SQLite file. A tracking
    server decides for itself (None); other databases need an explicit root."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def artifact_root_uri(root: str | Path | None) -> str | None:
    """A folder becomes a file: URI; URIs (s3://, file:, mlflow-artifacts:) stay as they are."""
    if root is None:
        return None
    text = str(root)
    return text if "://" in text or text.startswith("file:") else Path(text).expanduser().resolve().as_uri()


def ensure_experiment(client, name: str, artifact_root: str | None) -> str:
    """The id of experiment ``name``, created (artifacts under ``artifact_root/name``) if missing."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - heavy; loaded when a store is first used

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:  # created meanwhile by another process
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def check_store(uri: str) -> None:
    """Fail fast, saying what to do, when the MLflow store at ``uri`` cannot be used: a tracking
    server that does not answer its health check within seconds (MLflow's own client would retry
    for minutes), a SQLite folder that cannot be created."""
    shown = redact_uri(uri)
    if uri.startswith(("http://", "https://")):
        import requests  # noqa: PLC0415 - MLflow's HTTP client, loaded only for a tracking server

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S)
        except requests.RequestException as exc:
            raise RegistryUnavailable(
                f"MLflow tracking server {shown} is unreachable ({type(exc).__name__}). Start it "
                f"(mlflow server --backend-store-uri ... --port ...) or point the registry / tracking URI "
                f"($MLFLOW_TRACKING_URI) elsewhere"
            ) from None
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"MLflow tracking server {shown} answered its health check with "
                f"HTTP {response.status_code}: is this an MLflow server?"
            )
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot create the MLflow store folder {db.parent}: {exc.strerror or exc}"
            ) from None

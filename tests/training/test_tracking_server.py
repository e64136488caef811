"""A real MLflow tracking server, by URL, as a team would run it: `preread train` logs and registers
through it (artifacts proxied by the server), `preread models` promotes on it, and a reader
loads `ecg@champion` from it."""

from __future__ import annotations

import json

import pytest
import yaml

from models.registry import open_registry
from tests.conftest import REPO_ROOT
from tests.mlflow_store import MlflowServer, mlflow_server_command
from tests.serving.conftest import TINY_ECG_TRAINING, free_port

# The full mlflow package is a dev dependency (pyproject [dev]): without it these tests fail, never skip.
assert mlflow_server_command() is not None, "`mlflow server` needs the full mlflow package (pip install -e .[dev])"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), free_port())
    yield server
    server.stop()


def preread(capsys, *args: str) -> tuple[int, str, str]:
    from preread.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_promote_and_serve_through_a_tracking_server(server, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    config = yaml.safe_load(TINY_ECG_TRAINING.read_text())
    config["checkpoint_dir"] = str(tmp_path / "checkpoints")
    config_file = tmp_path / "ecg-tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # as an operator would set it: no --registry
    monkeypatch.delenv("PREREAD_CONFIG", raising=False)
    monkeypatch.delenv("PREREAD_REGISTRY", raising=False)
    code, out, err = preread(capsys, "train", "ecg", "--config", str(config_file))
    assert code == 0, err[-3000:]
    assert f"in {server.url}" in out

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    version = client.get_model_version("ecg", "1")
    run = client.get_run(version.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts go through the server"
    assert len(client.get_metric_history(version.run_id, "val_loss")) == config["optim"]["epochs"]

    registry = open_registry(server.url, cache_dir=tmp_path / "cache")
    first = registry.resolve("ecg@champion")
    assert first.version == 1 and (first.path / "model.onnx").is_file(), "downloaded through the server"
    assert first.path.parent == tmp_path / "cache" / "ecg"
    registry.register("ecg", first.path, first.card)  # a second version, registered by hand

    code, out, err = preread(capsys, "models", "--registry", server.url, "promote", "ecg/2")
    assert code == 0, err
    code, out, _ = preread(capsys, "models", "list")
    assert [(row["version"], row["aliases"]) for row in json.loads(out)] == [(1, []), (2, ["champion"])]
    assert registry.version_of("ecg@champion") == 2

    from models.ecg.pipeline import EcgPreReader

    reader = EcgPreReader.from_registry(registry, "ecg@champion", REPO_ROOT / "configs" / "triage" / "ecg.yaml")
    assert reader.model_identity["version"] == 2
    assert reader.card.training_run.run_id == version.run_id, "the card links back to the training run"

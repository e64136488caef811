"""`preread models` on the MLflow registry: register a data scientist's own exported folder (after
shape and parity checks), list, promote, export; every mistake is a clear error."""

from __future__ import annotations

import json
import shutil

import pytest

from models.card import ModelCard
from models.registry import ModelRegistry, open_registry
from preread.cli import main
from tests.mlflow_store import new_mlflow_store


@pytest.fixture
def uri(tmp_path) -> str:
    return new_mlflow_store(tmp_path / "mlflow")


def test_register_list_promote_export(exported_model_dir, uri, tmp_path, capsys):
    assert main(["models", "--registry", uri, "register", str(exported_model_dir), "--alias", "challenger"]) == 0
    out = capsys.readouterr().out
    assert "ok   model.onnx: input [None, 12, 5000]" in out and "ONNX vs TorchScript: max |Δp|" in out
    assert "registered ecg version 1 aliases ['challenger']" in out
    assert main(["models", "--registry", uri, "register", str(exported_model_dir)]) == 0
    capsys.readouterr()

    assert main(["models", "--registry", uri, "promote", "ecg/2"]) == 0
    assert "ecg@champion → version 2" in capsys.readouterr().out
    assert main(["models", "--registry", uri, "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["aliases"]) for r in rows] == [(1, ["challenger"]), (2, ["champion"])]
    assert all(r["run_id"] for r in rows)

    assert main(["models", "--registry", uri, "export", "ecg@champion", "--out", str(tmp_path / "out")]) == 0
    exported = tmp_path / "out" / "ecg-v2.onnx"
    assert exported.read_bytes() == (exported_model_dir / "model.onnx").read_bytes()
    assert ModelCard.load(tmp_path / "out" / "ecg-v2.onnx.card.json").version == 2


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: (d / "card.json").unlink(), "card.json"),
        (
            lambda d: (
                ModelCard.load(d).model_copy(update={"labels": ["AF"], "label_names": ["AF"], "thresholds": {}}).save(d)
            ),
            "for a batch of 2; the card's 1 labels need [2, 1]",
        ),
        (lambda d: (d / "model.onnx").write_bytes(b"not onnx"), "model.onnx does not run"),
        (lambda d: shutil.copyfile(d / "model.onnx", d / "model.pt"), "model.pt does not run"),
    ],
)
def test_register_refuses_a_folder_that_fails_its_checks(exported_model_dir, uri, tmp_path, capsys, break_it, message):
    folder = tmp_path / "mine"
    shutil.copytree(exported_model_dir, folder)
    break_it(folder)
    assert main(["models", "--registry", uri, "register", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert open_registry(uri).is_empty()


def test_promote_errors_name_the_problem(exported_model_dir, uri, capsys):
    assert main(["models", "--registry", uri, "register", str(exported_model_dir)]) == 0
    capsys.readouterr()
    assert main(["models", "--registry", uri, "promote", "ecg/7"]) == 2
    assert "has no version 7 (versions: 1)" in capsys.readouterr().err
    assert main(["models", "--registry", uri, "promote", "ecg"]) == 2
    assert "give NAME/VERSION" in capsys.readouterr().err
    assert main(["models", "--registry", uri, "promote", "ecg/1", "--alias", "v2"]) == 2
    assert "invalid alias 'v2'" in capsys.readouterr().err


def test_the_serving_config_registry_section(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from serving.config import load_config

    with pytest.raises(ValidationError, match=r"registry\.uri[\s\S]*unsupported scheme 'ftp'"):
        load_config(overrides={"registry": {"uri": "ftp://models.example"}})
    with pytest.raises(ValidationError, match="registry.artifact_root is required"):
        load_config(overrides={"registry": {"uri": "postgresql://mlflow@db/mlflow"}})
    legacy = load_config(overrides={"registry": {"root": "var/registry"}}).resolved(tmp_path)
    assert legacy.registry.uri == str(tmp_path / "var" / "registry")
    assert isinstance(legacy.registry.open(), ModelRegistry)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = load_config().resolved(tmp_path).registry
    assert default.uri == f"sqlite:///{tmp_path}/var/mlflow/mlflow.db", "absolute, for Ray replicas"
    assert default.open().cache_dir == tmp_path / "var" / "mlflow" / "cache"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert load_config().resolved(tmp_path).registry.uri == "http://mlflow.example:5000"


def test_a_shared_server_with_other_models(exported_model_dir, uri, capsys):
    """Models other tools registered are not ours to list; a version without a card under one of
    our names is reported, not fatal."""
    registry = open_registry(uri)
    client = registry.client
    run = registry.start_run("someone-else", "their model")
    client.log_text(run.run_id, "weights", "model/model.bin")
    for name in ("churn", "ecg"):
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.run_id}/model", run_id=run.run_id)
    assert registry.names() == []
    assert main(["models", "--registry", uri, "register", str(exported_model_dir)]) == 0
    capsys.readouterr()
    assert registry.names() == ["ecg"]
    assert main(["models", "--registry", uri, "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["version"] for row in rows] == [1, 2]
    assert "has no card.json: it was not registered by preread" in rows[0]["error"]
    assert rows[1]["architecture"] == "xresnet1d18"

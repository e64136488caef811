"""Every tracked training is an MLflow run: the config as parameters, metrics per epoch, curves,
card and config as artifacts, and the registered version linked to the run. Tracking problems
stop training before it starts, never lose a trained model after."""

from __future__ import annotations

import pytest

from models.card import ModelCard
from models.registry import ModelRegistry, RegistryUnavailable, open_registry
from models.registry_mlflow import flatten, numbers
from tests.mlflow_store import new_mlflow_store
from tests.training.conftest import tiny_ecg_config
from training.ecg import train_ecg
from training.tracking import RegistrationFailed, TrackingError, train_tracked

EPOCHS = 3


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny ECG training, tracked, registered in a fresh MLflow store (the default backend)."""
    root = tmp_path_factory.mktemp("tracked")
    uri = new_mlflow_store(root / "mlflow")
    config = tiny_ecg_config(root, epochs=EPOCHS, early_stopping={"metric": "val_loss", "patience": 10})
    config_file = root / "ecg-tiny.yaml"
    config_file.write_text("# as given\n", encoding="utf-8")
    seen = []
    registered = train_tracked(
        config,
        uri,
        train_ecg,
        config_path=config_file,
        progress=False,
        on_epoch_end=lambda epoch, metrics: seen.append(epoch),
    )
    return uri, config, registered, seen


def test_the_run_holds_config_metrics_curves_and_card(tracked):
    uri, config, registered, seen = tracked
    client = _client(uri)
    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "preread-ecg"
    params = run.data.params
    assert params["optim.lr"] == "0.01" and params["model.width"] == "4" and params["data.n"] == "40"
    assert params["model.params.layers"] == "[1, 1, 1, 1]" and params["tracking.enabled"] == "True"

    assert seen == list(range(EPOCHS)), "the caller's own on_epoch_end still runs"
    history = registered.card.metrics["history"]
    for key in ("train_loss", "val_loss", "val_macro_auroc", "lr"):
        logged = client.get_metric_history(registered.run_id, key)
        assert [m.step for m in logged] == [1, 2, 3], key
        assert [m.value for m in logged] == pytest.approx([h[key] for h in history]), key
    per_label = [k for k in run.data.metrics if k.startswith("val_auroc/")]
    assert per_label, "per-label validation AUROC per epoch"
    assert run.data.metrics["model/onnx_parity_max_abs_diff"] <= 1e-4
    assert run.data.metrics["model/val_macro_auroc"] == pytest.approx(registered.card.metrics["val_macro_auroc"])

    artifacts = _artifacts(client, registered.run_id)
    assert {
        "config/validated.yaml",
        "config/ecg-tiny.yaml",
        "card.json",
        "curves/loss.png",
        "curves/auroc.png",
        "model/model.onnx",
        "model/model.pt",
        "model/state_dict.pt",
        "model/card.json",
    } <= artifacts
    assert run.data.tags["preread.data.fingerprint_sha256"] == registered.card.training_data.fingerprint_sha256
    assert run.data.tags["preread.registered_version"] == str(registered.version)
    assert run.data.tags["mlflow.source.name"] == "preread train ecg"


def test_the_registered_version_is_the_runs_model(tracked):
    uri, _, registered, _ = tracked
    version = _client(uri).get_model_version("ecg", str(registered.version))
    assert version.run_id == registered.run_id and version.source == f"runs:/{registered.run_id}/model"
    card = open_registry(uri).resolve("ecg@champion").card
    assert card.training_run.run_id == registered.run_id and card.training_run.experiment == "preread-ecg"
    assert ModelCard.load(registered.path).training_run.run_id == registered.run_id


def test_a_file_registry_links_to_a_run_in_the_tracking_store(tmp_path):
    uri = new_mlflow_store(tmp_path / "tracking")
    registry = ModelRegistry(tmp_path / "registry")
    config = tiny_ecg_config(tmp_path, epochs=1, tracking={"uri": uri, "experiment": "my-ecg-experiments"})
    registered = train_tracked(config, registry, train_ecg, progress=False)
    assert registered.path == registry.root / "ecg" / "1"
    link = registered.card.training_run
    client = _client(uri)
    run = client.get_run(link.run_id)
    assert link.experiment == "my-ecg-experiments" and link.tracking_uri == uri
    assert run.info.status == "FINISHED" and "card.json" in _artifacts(client, link.run_id)
    assert not client.search_registered_models(), "the models themselves stay in the file registry"


def test_an_unreachable_tracking_store_stops_training_before_it_starts(tmp_path):
    from tests.serving.conftest import free_port

    started = []
    config = tiny_ecg_config(tmp_path, tracking={"uri": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(TrackingError, match="is unreachable.*Training was not started"):
        train_tracked(config, ModelRegistry(tmp_path / "registry"), lambda *a, **k: started.append(1))
    assert not started
    with pytest.raises(RegistryUnavailable, match="is unreachable"):  # an unreachable MLflow registry too
        train_tracked(tiny_ecg_config(tmp_path), f"http://127.0.0.1:{free_port()}", lambda *a, **k: started.append(1))
    assert not started


def test_tracking_uri_must_be_the_mlflow_registrys_store(tmp_path):
    registry = new_mlflow_store(tmp_path / "registry")
    config = tiny_ecg_config(tmp_path, tracking={"uri": new_mlflow_store(tmp_path / "other")})
    with pytest.raises(TrackingError, match="differs from the MLflow registry"):
        train_tracked(config, registry, train_ecg, progress=False)


def test_tracking_trouble_during_training_never_loses_the_model(tmp_path, monkeypatch, caplog):
    """The tracking store goes away mid-run: epochs go on unlogged, and the registration that then
    fails keeps the trained, exported model on disk, saying how to register it."""
    uri = new_mlflow_store(tmp_path / "mlflow")
    registry = open_registry(uri)
    real_log_batch = registry.client.log_batch

    def log_batch(run_id, metrics=(), params=(), tags=()):
        if metrics:
            raise ConnectionError("tracking server went away")
        return real_log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def register_fails(*args, **kwargs):
        raise RegistryUnavailable("MLflow registry: database is locked")

    monkeypatch.setattr(registry.client, "log_batch", log_batch)
    monkeypatch.setattr(registry, "register", register_fails)
    with pytest.raises(RegistrationFailed, match="It is kept at") as failed:
        train_tracked(tiny_ecg_config(tmp_path, epochs=2), registry, train_ecg, progress=False)
    assert "training goes on" in caplog.text
    (folder,) = (tmp_path / "checkpoints" / "unregistered").iterdir()
    assert str(folder) in str(failed.value)
    card = ModelCard.load(folder)
    assert (folder / "model.onnx").is_file() and card.training_run is not None
    assert card.metrics["epochs_run"] == 2, "training ran to the end although no epoch was logged"
    (run,) = _client(uri).search_runs([_client(uri).get_experiment_by_name("preread-ecg").experiment_id])
    assert run.info.status == "FAILED" and "database is locked" in run.data.tags["preread.error"]


def test_tracking_can_be_switched_off(tmp_path):
    uri = new_mlflow_store(tmp_path / "mlflow")
    registered = train_tracked(
        tiny_ecg_config(tmp_path, epochs=1, tracking={"enabled": False}), uri, train_ecg, progress=False
    )
    assert registered.card.training_run is None
    run = _client(uri).get_run(registered.run_id)
    assert run.data.tags["mlflow.source.name"] == "preread models register", "only a registration run holds the files"


def test_flattening_for_mlflow():
    assert dict(flatten("", {"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}})) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "None",
        "e": "{}",
    }
    assert dict(numbers("", {"loss": 0.5, "auroc": {"AF": 0.9, "PVC": None, "X": float("nan")}, "name": "x"})) == {
        "loss": 0.5,
        "auroc/AF": 0.9,
    }


def test_serve_trains_missing_demo_models_once_and_reuses_them(tmp_path, monkeypatch, capsys):
    """What `make run` does on an empty registry (the tiny config standing in for the demo one)."""
    import yaml

    import training.demo as cli
    from serving.config import load_config

    config = tiny_ecg_config(tmp_path, epochs=1).model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "ecg-demo.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setitem(cli.DEMO_TRAINING, "ecg", tmp_path / "ecg-demo.yaml")
    monkeypatch.setattr("models.registry.DEFAULT_REGISTRY_ROOT", tmp_path / "old-registry")
    uri = new_mlflow_store(tmp_path / "mlflow")
    cfg = load_config(overrides={"registry": {"uri": uri}}).resolved()
    assert cli.ensure_demo_models(cfg, ["ecg"]) == ["ecg"]
    assert "has no 'ecg' model: training the demo model" in capsys.readouterr().out
    champion = open_registry(uri).resolve("ecg@champion")
    assert champion.version == 1 and champion.card.training_run is not None, "a tracked run, like preread train"
    assert cli.ensure_demo_models(cfg, ["ecg"]) == [], "a later start reuses the registered model"

    # An earlier preread's file registry (var/registry) is moved over instead of retrained.
    old = ModelRegistry(tmp_path / "old-registry")
    for _ in range(2):
        old.register("ecg", champion.path, champion.card)
    old.set_alias("ecg", "champion", 1)
    fresh = new_mlflow_store(tmp_path / "fresh")
    assert cli.ensure_demo_models(load_config(overrides={"registry": {"uri": fresh}}).resolved(), ["ecg"]) == []
    assert "moved ecg versions [1, 2]" in capsys.readouterr().out
    assert open_registry(fresh).aliases("ecg") == {"champion": 1}


def test_train_command_reports_bad_configs_and_stores(tmp_path, capsys):
    from preread.cli import main
    from tests.serving.conftest import TINY_ECG_TRAINING, free_port

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: ecg\noptim: {lr: -1}\ntracking: {uri: /not/a/uri}\n")
    assert main(["train", "ecg", "--config", str(bad), "--registry", str(tmp_path / "files")]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "tracking" in err
    assert (
        main(["train", "ecg", "--config", str(TINY_ECG_TRAINING), "--registry", f"http://127.0.0.1:{free_port()}"]) == 2
    )
    assert "is unreachable" in capsys.readouterr().err
    assert main(["train", "ecg", "--config", str(TINY_ECG_TRAINING), "--registry", "ftp://x"]) == 2
    assert "unsupported scheme 'ftp'" in capsys.readouterr().err

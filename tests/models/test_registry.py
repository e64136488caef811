"""The registry contract — versions, aliases, references, atomic registration, evidence, errors —
on both backends: the file registry and the MLflow Model Registry (a real local SQLite store).
Backend-specific behaviour (folder layout, download cache, races) is tested at the end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from models.card import ModelCard
from models.registry import (
    CHAMPION,
    ModelNotFound,
    ModelRegistry,
    Registry,
    RegistryUnavailable,
    open_registry,
    parse_ref,
    registry_kind,
)
from tests.mlflow_store import new_mlflow_store
from tests.models.test_card import make_card


def staged_model(tmp_path: Path, payload: bytes = b"onnx-bytes") -> Path:
    directory = tmp_path / f"staging-{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(payload)
    (directory / "state_dict.pt").write_bytes(b"weights")
    return directory


@pytest.fixture(params=["files", "mlflow"])
def registry(request, tmp_path) -> Registry:
    if request.param == "files":
        return ModelRegistry(tmp_path / "registry")
    return open_registry(new_mlflow_store(tmp_path / "mlflow"))


# ---- the contract (both backends) ----------------------------------------------------------


def test_register_assigns_increasing_versions(registry, tmp_path):
    assert registry.is_empty() and registry.is_empty("ecg")
    first = registry.register("ecg", staged_model(tmp_path, b"v1"), make_card())
    second = registry.register("ecg", staged_model(tmp_path, b"v2"), make_card())
    assert (first.version, second.version) == (1, 2)
    assert (second.path / "model.onnx").read_bytes() == b"v2"
    assert (first.path / "model.onnx").read_bytes() == b"v1"
    assert second.card.version == 2 and second.card.name == "ecg"
    assert ModelCard.load(second.path).version == 2, "the local copy's card says which version it is"
    assert [m.version for m in registry.versions("ecg")] == [1, 2]
    assert registry.names() == ["ecg"]
    assert not registry.is_empty("ecg") and registry.is_empty("cxr") and not registry.is_empty()


def test_resolve_references(registry, tmp_path):
    for _ in range(3):
        registry.register("ecg", staged_model(tmp_path), make_card())
    assert registry.resolve("ecg").version == 3  # no champion yet: the latest
    registry.set_alias("ecg", CHAMPION, 2)
    registry.set_alias("ecg", "challenger", 3)
    champion = registry.resolve("ecg")
    assert champion.version == 2 and champion.aliases == ("champion",)
    assert registry.resolve("ecg@challenger").version == 3
    assert registry.resolve("ecg/1").version == 1
    assert registry.resolve("ecg@latest").version == 3
    assert registry.aliases("ecg") == {"champion": 2, "challenger": 3}
    registry.set_alias("ecg", CHAMPION, 3)  # promotion moves the alias
    assert registry.resolve("ecg").aliases == ("challenger", "champion")
    registry.remove_alias("ecg", "challenger")
    assert registry.aliases("ecg") == {"champion": 3}
    with pytest.raises(ModelNotFound, match="no alias 'challenger'"):
        registry.remove_alias("ecg", "challenger")


def test_version_of_follows_the_alias_without_loading(registry, tmp_path):
    for _ in range(2):
        registry.register("ecg", staged_model(tmp_path), make_card())
    assert registry.version_of("ecg") == 2 and registry.version_of("ecg/1") == 1
    registry.set_alias("ecg", CHAMPION, 1)
    assert registry.version_of("ecg@champion") == 1 and registry.version_of("ecg") == 1
    registry.set_alias("ecg", CHAMPION, 2)
    assert registry.version_of("ecg@champion") == 2
    with pytest.raises(ModelNotFound, match="has no alias 'challenger'"):
        registry.version_of("ecg@challenger")


@pytest.mark.parametrize(
    "ref, message",
    [
        ("cxr", "no model named 'cxr'"),
        ("ecg/9", r"has no version 9 \(versions: 1\)"),
        ("ecg@challenger", "has no alias 'challenger'"),
        ("ecg/abc", "invalid model reference"),
        ("ecg@", "invalid model reference"),
        ("../etc", "invalid model reference"),
    ],
)
def test_unknown_references_raise_model_not_found(registry, tmp_path, ref, message):
    registry.register("ecg", staged_model(tmp_path), make_card())
    with pytest.raises(ModelNotFound, match=message) as caught:
        registry.resolve(ref)
    assert isinstance(caught.value, KeyError)
    assert not str(caught.value).startswith("'")  # a readable message, not a KeyError repr


def test_alias_must_point_at_an_existing_version(registry, tmp_path):
    registry.register("ecg", staged_model(tmp_path), make_card())
    with pytest.raises(ModelNotFound, match="no version 5"):
        registry.set_alias("ecg", CHAMPION, 5)
    for reserved in ("latest", "v1", "1champion", "bad alias"):
        with pytest.raises(ValueError, match="invalid alias"):
            registry.set_alias("ecg", reserved, 1)


def test_register_validates_inputs(registry, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds none of"):
        registry.register("ecg", empty, make_card())
    with pytest.raises(ValueError, match="invalid model name"):
        registry.register("ecg/2", staged_model(tmp_path), make_card())
    with pytest.raises(FileNotFoundError):
        registry.register("ecg", tmp_path / "missing", make_card())
    assert registry.is_empty()


def test_failed_registration_leaves_no_version(registry, tmp_path, monkeypatch):
    registry.register("ecg", staged_model(tmp_path), make_card())

    def broken_copy(src, dst, *args, **kwargs):
        Path(dst).mkdir(parents=True)
        (Path(dst) / "model.onnx").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        registry.register("ecg", staged_model(tmp_path), make_card())
    assert [m.version for m in registry.versions("ecg")] == [1]
    assert registry.resolve("ecg").version == 1


def test_evidence_is_kept_with_the_version(registry, tmp_path):
    model = registry.register("ecg", staged_model(tmp_path), make_card(metrics={"val_macro_auroc": 0.9}))
    where = registry.annotate(
        model, metrics={"gate": {"passed": True, "reasons": ["ok"]}}, files={"gate.json": '{"passed": true}'}
    )
    assert set(where) == {"gate.json"}
    again = registry.resolve("ecg/1")
    assert again.card.metrics["gate"] == {"passed": True, "reasons": ["ok"]}
    assert again.card.metrics["val_macro_auroc"] == 0.9, "the card's own metrics stay"
    assert registry.evidence(again, "gate.json") == '{"passed": true}'
    assert (again.path / "model.onnx").read_bytes() == b"onnx-bytes", "model files are untouched"
    with pytest.raises(FileNotFoundError):
        registry.evidence(again, "nothing.json")


def test_the_card_is_readable_without_the_model_files(registry, tmp_path):
    registry.register("ecg", staged_model(tmp_path, b"x" * 1000), make_card(architecture="inception1d"))
    listed = registry.versions("ecg")[0]
    assert listed.card.architecture == "inception1d" and listed.card.version == 1


# ---- locations ------------------------------------------------------------------------------


def test_open_registry_picks_the_backend_from_the_location(tmp_path, monkeypatch):
    assert isinstance(open_registry(tmp_path / "files"), ModelRegistry)
    assert isinstance(open_registry(str(tmp_path / "files")), ModelRegistry)
    mlflow = open_registry(f"sqlite:///{tmp_path}/m/mlflow.db")
    assert type(mlflow).__name__ == "MlflowRegistry"
    assert mlflow.cache_dir == tmp_path / "m" / "cache"
    assert mlflow.artifact_root == (tmp_path / "m" / "artifacts").as_uri()
    assert open_registry(mlflow) is mlflow
    monkeypatch.delenv("PREREAD_REGISTRY", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert open_registry().location == "http://mlflow.example:5000"
    monkeypatch.setenv("PREREAD_REGISTRY", str(tmp_path / "files"))
    assert isinstance(open_registry(), ModelRegistry)


@pytest.mark.parametrize(
    "location, message",
    [
        ("file:///tmp/x", "use a plain folder path"),
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        ("", "empty registry location"),
    ],
)
def test_invalid_locations_say_what_to_write(location, message):
    with pytest.raises(ValueError, match=message):
        registry_kind(location)


def test_unreachable_server_fails_fast_with_the_reason():
    from tests.serving.conftest import free_port

    registry = open_registry(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RegistryUnavailable, match="is unreachable"):
        registry.check()
    with pytest.raises(RegistryUnavailable, match="is unreachable"):
        registry.resolve("ecg@champion")


def test_password_is_never_shown():
    registry = open_registry("https://alice:s3cret@mlflow.example")
    assert "s3cret" not in registry.location and "s3cret" not in repr(registry)


# ---- file registry specifics -----------------------------------------------------------------


def test_file_layout(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registered = registry.register("ecg", staged_model(tmp_path), make_card())
    assert registered.path == registry.root / "ecg" / "1"
    annotated = registry.annotate(registered, files={"gate.json": "{}"})
    assert annotated["gate.json"] == str(registered.path / "gate.json")
    assert sorted(p.name for p in (registry.root / "ecg").iterdir() if not p.name.startswith(".lock")) == ["1"]


def test_concurrent_registration_takes_the_next_free_version(tmp_path, monkeypatch):
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("ecg", staged_model(tmp_path), make_card())
    real_rename = os.rename
    raced = {"done": False}

    def rename_after_a_rival(src, dst):
        # Another process registers version 2 between our version choice and our rename.
        if not raced["done"]:
            raced["done"] = True
            rival = registry.root / "ecg" / "2"
            rival.mkdir()
            make_card(version=2).save(rival)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_rival)
    registered = registry.register("ecg", staged_model(tmp_path), make_card())
    assert registered.version == 3
    assert ModelCard.load(registered.path).version == 3


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREAD_REGISTRY", str(tmp_path / "elsewhere"))
    assert ModelRegistry().root == tmp_path / "elsewhere"
    monkeypatch.delenv("PREREAD_REGISTRY")
    assert ModelRegistry().root == Path("var/registry")


def test_parse_ref():
    assert parse_ref("ecg") == ("ecg", None, None)
    assert parse_ref("ecg@champion") == ("ecg", "champion", None)
    assert parse_ref("ecg/12") == ("ecg", None, 12)


# ---- MLflow specifics ------------------------------------------------------------------------


def test_mlflow_versions_are_run_artifacts_with_card_tags(tmp_path):
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path / "mlflow")
    registry = open_registry(uri)
    registered = registry.register("ecg", staged_model(tmp_path), make_card(metrics={"val_macro_auroc": 0.875}))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("ecg", "1")
    assert version.source == f"runs:/{registered.run_id}/model" and version.run_id == registered.run_id
    assert version.tags["architecture"] == "xresnet1d18" and version.tags["val_macro_auroc"] == "0.875"
    assert version.description.startswith("DEMO model")
    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "preread-ecg"
    assert sorted(a.path for a in client.list_artifacts(registered.run_id, "model")) == [
        "model/card.json",
        "model/model.onnx",
        "model/state_dict.pt",
    ]
    registry.set_alias("ecg", CHAMPION, 1)
    assert int(client.get_model_version_by_alias("ecg", "champion").version) == 1, "a plain MLflow alias"


def test_mlflow_download_happens_once_into_the_cache(tmp_path, monkeypatch):
    import mlflow.artifacts

    registry = open_registry(new_mlflow_store(tmp_path / "mlflow"))
    registry.register("ecg", staged_model(tmp_path, b"v1"), make_card())
    calls = []
    real = mlflow.artifacts.download_artifacts
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda **kw: calls.append(kw) or real(**kw))
    first = registry.resolve("ecg@latest").path
    second = open_registry(registry.uri).resolve("ecg/1").path  # another process, same cache
    assert first == second and first.parent.parent == registry.cache_dir
    assert (first / "model.onnx").read_bytes() == b"v1"
    downloads = [c for c in calls if not c["artifact_uri"].endswith("card.json")]
    assert len(downloads) == 1, "a version is downloaded once"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".incoming")], "no half-downloaded copies"


def test_mlflow_upload_failure_registers_nothing(tmp_path, monkeypatch):
    registry = open_registry(new_mlflow_store(tmp_path / "mlflow"))
    registry.register("ecg", staged_model(tmp_path), make_card())

    def upload_fails(*args, **kwargs):
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(registry.client, "log_artifacts", upload_fails)
    with pytest.raises(RegistryUnavailable, match="connection reset"):
        registry.register("ecg", staged_model(tmp_path), make_card())
    assert [m.version for m in registry.versions("ecg")] == [1]
    runs = registry.client.search_runs([registry.client.get_experiment_by_name("preread-ecg").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"], "the aborted registration run is marked"

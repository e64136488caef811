"""File-based model registry: versions, aliases, references, atomic registration, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from models.card import ModelCard
from models.registry import CHAMPION, ModelNotFound, ModelRegistry, parse_ref
from tests.models.test_card import make_card


def staged_model(tmp_path: Path, payload: bytes = b"onnx-bytes") -> Path:
    directory = tmp_path / f"staging-{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(payload)
    (directory / "state_dict.pt").write_bytes(b"weights")
    return directory


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_register_assigns_increasing_versions(registry, tmp_path):
    assert registry.is_empty() and registry.is_empty("ecg")
    first = registry.register("ecg", staged_model(tmp_path, b"v1"), make_card())
    second = registry.register("ecg", staged_model(tmp_path, b"v2"), make_card())
    assert (first.version, second.version) == (1, 2)
    assert second.path == registry.root / "ecg" / "2"
    assert (second.path / "model.onnx").read_bytes() == b"v2"
    assert second.card.version == 2 and second.card.name == "ecg"
    assert ModelCard.load(second.path).version == 2
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


@pytest.mark.parametrize("ref, message", [
    ("cxr", "no model named 'cxr'"),
    ("ecg/9", r"has no version 9 \(versions: 1\)"),
    ("ecg@challenger", "has no alias 'challenger'"),
    ("ecg/abc", "invalid model reference"),
    ("ecg@", "invalid model reference"),
    ("../etc", "invalid model reference"),
])
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
    with pytest.raises(ValueError, match="invalid alias"):
        registry.set_alias("ecg", "latest", 1)


def test_failed_registration_leaves_nothing_behind(registry, tmp_path, monkeypatch):
    registry.register("ecg", staged_model(tmp_path), make_card())

    def broken_copy(src, dst, *args, **kwargs):
        Path(dst).mkdir(parents=True)
        (Path(dst) / "model.onnx").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        registry.register("ecg", staged_model(tmp_path), make_card())
    assert [m.version for m in registry.versions("ecg")] == [1]
    assert sorted(p.name for p in (registry.root / "ecg").iterdir() if not p.name.startswith(".lock")) == ["1"]


def test_concurrent_registration_takes_the_next_free_version(registry, tmp_path, monkeypatch):
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


def test_register_validates_inputs(registry, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds none of"):
        registry.register("ecg", empty, make_card())
    with pytest.raises(ValueError, match="invalid model name"):
        registry.register("ecg/2", staged_model(tmp_path), make_card())
    with pytest.raises(FileNotFoundError):
        registry.register("ecg", tmp_path / "missing", make_card())


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREAD_REGISTRY", str(tmp_path / "elsewhere"))
    assert ModelRegistry().root == tmp_path / "elsewhere"
    monkeypatch.delenv("PREREAD_REGISTRY")
    assert ModelRegistry().root == Path("var/registry")


def test_parse_ref():
    assert parse_ref("ecg") == ("ecg", None, None)
    assert parse_ref("ecg@champion") == ("ecg", "champion", None)
    assert parse_ref("ecg/12") == ("ecg", None, 12)

"""A promotion (alias moved in the registry) reaches a running reader without a restart."""

from __future__ import annotations

import shutil

from models.ecg.pipeline import EcgPreReader
from models.registry import ModelRegistry
from serving.model_reload import ReloadingReader
from tests.conftest import REPO_ROOT

TRIAGE = REPO_ROOT / "configs" / "triage" / "ecg.yaml"


def test_promotion_switches_the_served_version_and_a_bad_version_is_not_taken(tmp_path, ecg_registry):
    root = tmp_path / "registry"
    shutil.copytree(ecg_registry, root)
    registry = ModelRegistry(root)
    v1 = registry.resolve("ecg@champion")
    reader = ReloadingReader(root, "ecg@champion", lambda: EcgPreReader.from_registry(root, "ecg@champion", TRIAGE),
                             interval_s=3600)  # checks forced below
    assert reader.model_identity["version"] == v1.version
    registry.set_alias("ecg", "champion", v1.version)
    assert reader.maybe_reload() is False  # within the interval nothing is even checked

    v2 = registry.register("ecg", v1.path, v1.card)  # a retrained model, as training would register it
    assert reader.maybe_reload(force=True) is False             # alias not moved yet: nothing changes
    registry.set_alias("ecg", "champion", v2.version)
    assert reader.maybe_reload(force=True) is True
    assert reader.model_identity["version"] == v2.version

    v3 = registry.register("ecg", v1.path, v1.card)
    (v3.path / "model.onnx").write_bytes(b"not a model")  # a broken upload
    registry.set_alias("ecg", "champion", v3.version)
    assert reader.maybe_reload(force=True) is False
    assert reader.model_identity["version"] == v2.version, "a version that fails to load must not replace the served one"

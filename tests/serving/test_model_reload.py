"""A promotion (alias moved in the registry) reaches a running reader — and the running service on
Ray — without a restart, on the MLflow registry (the default) and the file registry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.ecg.pipeline import EcgPreReader
from models.registry import ModelRegistry, open_registry
from serving.replica.reload import ReloadingReader
from tests.conftest import REPO_ROOT
from tests.mlflow_store import new_mlflow_store

TRIAGE = REPO_ROOT / "configs" / "triage" / "ecg.yaml"


@pytest.mark.parametrize("backend", ["mlflow", "files"])
def test_promotion_switches_the_served_version_and_a_bad_version_is_not_taken(tmp_path, ecg_registry, backend):
    served = open_registry(ecg_registry).resolve("ecg@champion")
    registry = (
        open_registry(new_mlflow_store(tmp_path / "mlflow"))
        if backend == "mlflow"
        else ModelRegistry(tmp_path / "registry")
    )
    v1 = registry.set_alias("ecg", "champion", registry.register("ecg", served.path, served.card).version)
    reader = ReloadingReader(
        registry, "ecg@champion", lambda: EcgPreReader.from_registry(registry, "ecg@champion", TRIAGE), interval_s=3600
    )  # the poller sleeps; checks are forced below
    assert reader.model_identity["version"] == v1.version
    assert reader.maybe_reload() is False  # a polling thread follows; the request path never checks

    v2 = registry.register("ecg", served.path, served.card)  # a retrained model, as training would register it
    assert reader.maybe_reload(force=True) is False  # alias not moved yet: nothing changes
    registry.set_alias("ecg", "champion", v2.version)
    assert reader.maybe_reload(force=True) is True
    assert reader.model_identity["version"] == v2.version

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")  # a broken upload
    v3 = registry.register("ecg", broken, served.card)
    registry.set_alias("ecg", "champion", v3.version)
    assert reader.maybe_reload(force=True) is False
    assert reader.model_identity["version"] == v2.version, (
        "a version that fails to load must not replace the served one"
    )
    assert reader._check(retry_failed=False) is False, "a failed version is not retried on every poll"
    reader.close()


def test_a_background_poll_follows_the_alias(tmp_path, ecg_registry):
    served = open_registry(ecg_registry).resolve("ecg@champion")
    registry = open_registry(new_mlflow_store(tmp_path / "mlflow"))
    registry.set_alias("ecg", "champion", registry.register("ecg", served.path, served.card).version)
    checks = []
    real_version_of = registry.version_of

    def counted(ref):
        checks.append(ref)
        return real_version_of(ref)

    registry.version_of = counted
    reader = ReloadingReader(
        registry, "ecg@champion", lambda: EcgPreReader.from_registry(registry, "ecg@champion", TRIAGE), interval_s=0.2
    )
    v2 = registry.register("ecg", served.path, served.card)
    registry.set_alias("ecg", "champion", v2.version)
    deadline = time.monotonic() + 120  # a poll, then an MLflow download and an ONNX load
    while reader.version != v2.version and time.monotonic() < deadline:
        time.sleep(0.1)
    reader.close()
    assert reader.model_identity["version"] == v2.version
    assert len(checks) >= 2, "the alias is polled with version_of (one cheap call), never a download"


@pytest.mark.ray
def test_preread_models_promote_reaches_the_running_service_without_a_restart(serve_client):
    """The CLI moves champion in the service's MLflow registry; ECG reads then come from the new
    version (the replicas poll the alias every reload_interval_s)."""
    from bench.ecg_whole_read import dicom_ecg_bodies

    registry = serve_client.cfg.registry.open()
    champion = registry.resolve("ecg@champion")
    challenger = registry.register("ecg", champion.path, champion.card)  # stands in for a retrained model
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "preread.cli",
            "models",
            "--registry",
            registry.uri,
            "promote",
            f"ecg/{challenger.version}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert f"ecg@champion → version {challenger.version} (was {champion.version})" in done.stdout
    assert registry.version_of("ecg@champion") == challenger.version

    deadline = time.time() + 180
    seen = None
    headers = {"content-type": "application/dicom", **serve_client.auth()}
    for body in dicom_ecg_bodies(180):  # new UIDs each: a repeat would return the stored (old) read
        r = serve_client.http.post("/api/v1/ecg", content=body, headers=headers)
        assert r.status_code in (200, 201), r.text
        seen = r.json()["read"]["model"]["version"] if r.json()["read"] else None
        if seen == challenger.version or time.time() > deadline:
            break
        time.sleep(1)
    assert seen == challenger.version, f"service still answers with version {seen} after the promotion"
    cached = Path(registry.cache_dir) / "ecg"
    assert sum(1 for p in cached.iterdir() if p.name.startswith(f"{challenger.version}-")) == 1, (
        "the new version is downloaded once into the shared cache"
    )

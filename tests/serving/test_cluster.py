"""GPU layouts: the Ray Serve config files validate (Serve's schema and preread's), and on a local
multi-node Ray cluster (a head and two workers declaring GPUs) the model replicas land on the GPU
nodes and pack by their GPU fractions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serving.app import config_from_args, model_route_prefix
from serving.config_inference import DeploymentConfig
from tests.conftest import REPO_ROOT

SERVE_FILES = ["serve-gpu-node.yaml", "serve-cluster.yaml"]


def serve_file(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "configs" / name).read_text())


def app_config(app: dict):
    args = dict(app["args"])
    args.pop("model", None)  # a model application's own arg (ModelAppArgs); the config is the same
    if args.get("config") and not Path(args["config"]).exists():  # an operator's path, e.g. /etc/preread
        args["config"] = str(REPO_ROOT / "configs" / "serving.yaml")
    return config_from_args(args)


@pytest.mark.parametrize("name", SERVE_FILES)
def test_serve_config_files_validate_and_fit_their_gpus(name):
    from ray.serve.schema import ServeDeploySchema

    data = serve_file(name)
    ServeDeploySchema.model_validate(data)
    apps = {app["name"]: app for app in data["applications"]}
    assert set(apps) == {"preread", "preread-ecg", "preread-cxr"}
    for task in ("ecg", "cxr"):
        app = apps[f"preread-{task}"]
        assert app["route_prefix"] == model_route_prefix(task) and app["args"]["model"] == task
    configs = {name: app_config(app) for name, app in apps.items()}
    cfg = configs["preread"]
    assert all(c.deployments == cfg.deployments for c in configs.values()), "applications disagree on the layout"
    ecg, cxr = cfg.deployments.ecg, cfg.deployments.cxr
    assert 0 < ecg.num_gpus < 1 and 0 < cxr.num_gpus < 1, "model replicas take a fraction of a GPU"
    assert cfg.deployments.ingress.num_gpus == 0
    for deployment in (ecg, cxr):
        assert (
            deployment.num_replicas == "auto" and deployment.autoscaling(batching=True)["target_ongoing_requests"] > 0
        )
        assert deployment.max_ongoing_requests >= deployment.max_batch_size
    if name == "serve-gpu-node.yaml":  # both models share one GPU at full scale
        assert ecg.max_replicas * ecg.num_gpus + cxr.max_replicas * cxr.num_gpus <= 1.0
    else:
        assert ecg.resources.get("gpu_node", 0) > 0 and cxr.resources.get("gpu_node", 0) > 0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"num_gpus": 1.5}, "num_gpus"),
        ({"max_ongoing_requests": 8, "max_batch_size": 32}, "max_ongoing_requests"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
        ({"preferred_batch_sizes": [64], "max_batch_size": 32}, "preferred_batch_sizes"),
        ({"num_gpus": -0.5}, "num_gpus"),
    ],
)
def test_bad_layouts_are_refused_naming_the_field(change, field):
    with pytest.raises(ValidationError, match=field):
        DeploymentConfig(**change)


def test_overrides_must_be_a_partial_config():
    with pytest.raises(ValueError, match="overrides must be a mapping"):
        config_from_args({"overrides": ["ecg"]})
    with pytest.raises(ValidationError, match="num_gpus"):
        config_from_args({"overrides": {"deployments": {"ecg": {"num_gpus": 2.5}}}})


@pytest.mark.ray
@pytest.mark.slow
def test_model_replicas_land_on_gpu_nodes_and_pack_by_fraction(tmp_path, ecg_registry, cxr_registry):
    """serve-cluster.yaml's layout (ECG 2 × 0.25 GPU, CXR 2 × 0.5 GPU, both needing `gpu_node`) on a
    head without GPUs + two workers with one GPU each, in a subprocess with its own Ray cluster."""
    overrides = serve_file("serve-cluster.yaml")["applications"][0]["args"]["overrides"]
    for task in ("ecg", "cxr", "ingress"):  # this machine has 2 cores: only GPUs are scarce here
        overrides["deployments"][task]["num_cpus"] = 0.1
    cfg = config_from_args({"config": str(REPO_ROOT / "configs" / "serving.yaml"), "overrides": overrides})
    cfg = cfg.model_copy(
        update={
            "registry": cfg.registry.model_copy(update={"uri": str(cxr_registry)}),
            "database": cfg.database.model_copy(update={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}),
        }
    )
    config_path, result_path = tmp_path / "serving.yaml", tmp_path / "result.json"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_ADDRESS": ""}
    run = subprocess.run(
        [sys.executable, "-m", "tests.serving.cluster_check", str(config_path), str(result_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result_path.exists(), f"cluster check failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(result_path.read_text())
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{result}"
    replicas = result["replicas"]
    assert result["running"] == {"ecg": 2, "cxr": 2}, result
    assert sorted(r["task"] for r in replicas) == ["cxr", "cxr", "ecg", "ecg"], result
    assert all(len(r["gpu_ids"]) == 1 for r in replicas), "each replica got (a share of) one GPU"
    assert all(r["device"] == "cpu" for r in replicas), "no CUDA here: ONNX Runtime falls back to the CPU"
    assert all(r["node"] in result["workers"] for r in replicas), "a model replica landed on the GPU-less head"
    per_node = {
        node: sum(0.25 if r["task"] == "ecg" else 0.5 for r in replicas if r["node"] == node)
        for node in result["workers"]
    }
    assert all(gpus <= 1.0 for gpus in per_node.values()), per_node
    assert result["cluster_gpus"] == 2.0 and result["available_gpus"] == pytest.approx(0.5), result
    assert result["identities"] == {"ecg": "ecg", "cxr": "cxr"}

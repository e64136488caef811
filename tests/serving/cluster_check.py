"""Deploy preread's model applications on a local multi-node Ray cluster and report where the
replicas landed. Run as a subprocess by test_cluster.py (its own Ray cluster, never the test
session's shared instance):

    python -m tests.serving.cluster_check CONFIG.yaml RESULT.json

The cluster: a head without GPUs and two workers declaring ``num_gpus=1`` and a custom resource
``gpu_node`` (what `ray start --num-gpus 1 --resources '{"gpu_node": 1}'` does on a GPU node).
The config (configs/serve-gpu-node.yaml's model deployments, pointed at a test registry) asks for
fractional GPUs; the replicas run ONNX Runtime on the CPU here (no CUDA), which is fine: this
checks placement, not speed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter


def main(config_path: str, result_path: str) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serving.app import MODEL_DEPLOYMENTS, build_model_app, model_app_name, model_route_prefix
    from serving.config import load_config
    from tests.serving.conftest import free_port

    cfg = load_config(config_path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2, num_gpus=1, resources={"gpu_node": 1}) for _ in range(2)]
    result: dict = {"head": cluster.head_node.node_id, "workers": [w.node_id for w in workers]}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": free_port()})
        started = time.monotonic()
        for task in MODEL_DEPLOYMENTS:
            if task in cfg.models:
                serve.run(build_model_app(cfg, task), name=model_app_name(task), route_prefix=model_route_prefix(task))
        result["deploy_s"] = round(time.monotonic() - started, 1)
        status = serve.status()
        result["running"] = {
            task: status.applications[model_app_name(task)].deployments[deployment].replica_states.get("RUNNING", 0)
            for task, deployment in MODEL_DEPLOYMENTS.items()
            if task in cfg.models
        }
        # Ask the replicas where they run: enough concurrent calls reach every replica.
        replicas = {}
        for task, deployment in MODEL_DEPLOYMENTS.items():
            if task not in cfg.models:
                continue
            handle = serve.get_deployment_handle(deployment, model_app_name(task))
            for _ in range(10):
                for answer in [r.result(timeout_s=120) for r in [handle.placement.remote() for _ in range(16)]]:
                    replicas[answer["replica"]] = {
                        "task": task,
                        "node": answer["node_id"],
                        "gpu_ids": answer["gpu_ids"],
                        "device": answer["device"],
                    }
                if sum(1 for r in replicas.values() if r["task"] == task) >= result["running"][task]:
                    break
        replicas = list(replicas.values())
        result["replicas"] = replicas
        result["per_node"] = dict(Counter(r["node"] for r in replicas))
        result["available_gpus"] = ray.available_resources().get("GPU", 0.0)
        result["cluster_gpus"] = ray.cluster_resources().get("GPU", 0.0)
        # each replica answers: identity through its handle (runs on the worker)
        result["identities"] = {
            task: serve.get_deployment_handle(MODEL_DEPLOYMENTS[task], model_app_name(task))
            .identity.remote()
            .result(timeout_s=120)["name"]
            for task in MODEL_DEPLOYMENTS
            if task in cfg.models
        }
        serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
        with open(result_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

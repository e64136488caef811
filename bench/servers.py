"""The serving systems a bench runs against: Triton with the same batching as preread's replica, Ray
Serve with preread's applications deployed, the bench's serving config and its access token.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.measure import LoadPlan
from serving.auth.tokens import TokenService, load_secret
from serving.config_inference import DeploymentConfig
from serving.replica.triton.repository import write_repository
from serving.replica.triton.server import TritonServer


@contextlib.contextmanager
def triton_server(cfg, task: str, plan: LoadPlan) -> Iterator[Any]:
    """Triton serving the task's registered ONNX with the same batching as preread's deployment."""
    repository = Path(tempfile.mkdtemp(prefix="preread-bench-triton-"))
    # The same batching as preread's replica in bench_config (and no priority levels: they
    # stall Triton 2.51's batcher, see serving/replica/triton/repository.py).
    write_repository(
        repository,
        cfg,
        [task],
        intra_op_threads=plan.threads,
        max_batch_size=plan.batch,
        max_queue_delay_us=2000,
        preferred_batch_sizes=[],
    )
    with TritonServer(repository) as server:
        yield server


@contextlib.contextmanager
def ray_serve(cfg, haproxy: bool, num_cpus: float | None = None) -> Iterator[str]:
    """Ray + Serve with preread's applications deployed; yields the HTTP base URL. HAProxy mode is
    read by Ray Serve at start, so each mode gets its own Ray instance."""
    import ray  # noqa: PLC0415 - heavy; loaded only when a bench serves on Ray
    from ray import serve  # noqa: PLC0415 - heavy; loaded only when a bench serves on Ray

    from serving.app import deploy  # noqa: PLC0415 - the Ray Serve applications load Ray Serve

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if haproxy else "0"
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": cfg.http.port})
        deploy(cfg)
        base = f"http://127.0.0.1:{cfg.http.port}"
        _wait_ready(base)
        yield base
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        os.environ.pop("RAY_SERVE_ENABLE_HA_PROXY", None)


def _wait_ready(base: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{base}/readyz not ready after {timeout_s:.0f} s")


def bench_config(
    base_cfg,
    task: str,
    state: Path,
    plan: LoadPlan,
    models: list[str],
    port: int,
    dicom: bool = False,
    dicom_updates: dict | None = None,
):
    """The serving config for a bench run: temp state, the measured model with the bench's batch
    and threads, one replica."""
    models_cfg = {name: base_cfg.models[name] for name in models}
    models_cfg[task] = models_cfg[task].model_copy(update={"intra_op_threads": plan.threads, "backend": "onnxruntime"})
    deployment: DeploymentConfig = getattr(base_cfg.deployments, task).model_copy(
        update={
            "num_replicas": 1,
            "max_batch_size": plan.batch,
            "max_ongoing_requests": max(64, 4 * plan.batch),
            "batch_wait_timeout_s": 0.002,
        }
    )
    return base_cfg.model_copy(
        update={
            "models": models_cfg,
            "deployments": base_cfg.deployments.model_copy(update={task: deployment}),
            "dicom": base_cfg.dicom.model_copy(update={"enabled": dicom, **(dicom_updates or {})}),
            "http": base_cfg.http.model_copy(update={"port": port}),
            "storage": base_cfg.storage.model_copy(update={"root": state / "objects"}),
            "database": base_cfg.database.model_copy(update={"url": f"sqlite:///{state / 'bench.db'}"}),
            "auth": base_cfg.auth.model_copy(update={"secret_file": state / "secret.key"}),
        }
    )


def token(cfg, role: str = "datasci", sites: tuple[str, ...] = ("demo",)) -> str:
    return TokenService(load_secret(cfg.auth.secret_file)).issue("bench", role, list(sites))

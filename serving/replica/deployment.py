"""The model deployments: one Ray Serve application per model (``preread-ecg`` at /v2/models/ecg,
``preread-cxr`` at /v2/models/cxr), each the HTTP ingress of its own application so that KServe v2
calls reach the replica that computes them directly — no extra hop through the ingress, which
would cost more CPU per request than the network's own time on a small model. The ingress
(serving/app.py) calls the same replicas through deployment handles (serving/reading/client.py).

Deployments are thin: model work is models.ecg.pipeline.EcgPreReader / models.cxr.pipeline
.CxrPreReader (they run and are tested without Ray); batching with priorities is
serving.replica.batching.PriorityBatcher; promotions are followed by serving.replica.reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from models.cxr.pipeline import CxrPreReader
from models.ecg.pipeline import EcgPreReader
from models.read import PreRead
from serving import memory, metrics
from serving.auth.tokens import TokenService, load_secret
from serving.config import ServingConfig
from serving.replica.batching import PriorityBatcher
from serving.replica.kserve import (
    HEADER_LENGTH,
    RawAccessAuth,
    V2Error,
    check_version,
    raw_metadata,
    route_model_request,
    run_infer,
)
from serving.replica.reload import ReloadingReader
from serving.store.db import Database

log = logging.getLogger("preread.serve")

INGRESS_APP = "preread"
MODEL_DEPLOYMENTS = {"ecg": "ecg-model", "cxr": "cxr-model"}


def model_app_name(task: str) -> str:
    return f"{INGRESS_APP}-{task}"


def model_route_prefix(task: str) -> str:
    return f"/v2/models/{task}"


def _read_large_bodies_whole(limit: int = 64 * 1024 * 1024) -> None:
    """Let the replica's HTTP server (uvicorn, started by Ray Serve) buffer a whole request body
    before pausing the socket. Its default pauses every 64 KiB until the app has taken the chunk:
    a 7.7 MB batch of 32 ECGs meant ~120 pause/resume round trips through the event loop, ~20% of
    the replica's CPU spent receiving it. Only model replicas do this (their requests are batches)."""
    try:
        from uvicorn.protocols.http import h11_impl, httptools_impl  # noqa: PLC0415 - optional, the replica's server
    except ImportError:
        return
    httptools_impl.HIGH_WATER_LIMIT = h11_impl.HIGH_WATER_LIMIT = limit


class _ModelDeployment:
    """Shared body of a model deployment: the pre-reader for ``task`` from the registry (following
    promotions), one priority batcher for pre-reads and raw tensors alike, and the direct KServe v2
    route. ``reader_class`` has ``from_registry``."""

    task: str
    # Extra from_registry keywords of this task's reader.
    reader_options: dict[str, Any] = {}

    def _setup(self, cfg: ServingConfig, reader_class: type[EcgPreReader] | type[CxrPreReader]) -> None:
        _read_large_bodies_whole()
        memory.return_large_blocks()  # batches of signals and images go back to the system when freed
        model = cfg.models[self.task]
        registry = cfg.registry.open()
        self.reader = ReloadingReader(
            registry,
            model.ref,
            lambda: reader_class.from_registry(
                registry,
                model.ref,
                cfg.triage_path(self.task),
                backend=model.backend,
                **self.reader_options,
                **model.backend_options(),
            ),
            interval_s=model.reload_interval_s,
        )
        batching = getattr(cfg.deployments, self.task)
        self.batcher = PriorityBatcher(
            self._run_batch,
            batching.max_batch_size,
            batching.batch_wait_timeout_s,
            batching.priority_aging_s,
            name=self.task,
        )
        self.replica_metrics = metrics.ReplicaMetrics(self.task)
        self._auth_config = cfg  # the raw-access check opens the database on first use
        self._auth: RawAccessAuth | None = None
        log.info("%s model %s loaded on %s", self.task, self.reader.model_identity, self.reader.backend.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Ray Serve's ``user_config`` (serving/app.py sets it from configs/serving.yaml): the batching
        knobs, changed in place — a `serve deploy` with new values reaches running replicas
        without restarting them (or reloading the model)."""
        self.batcher.configure(
            max_batch_size=user_config.get("max_batch_size"),
            wait_timeout_s=user_config.get("batch_wait_timeout_s"),
            aging_s=user_config.get("priority_aging_s"),
        )

    # --- called through handles (the ingress) -----------------------------------------------------
    async def read(self, item: Any, priority: str = "routine") -> PreRead:
        """One pre-read, batched with whatever else waits; ``timing`` gains the queue/compute split."""
        try:
            done = await self.batcher.submit(("read", item), 1, priority)
        except Exception:
            self.replica_metrics.call("read", ok=False)
            raise
        read = done.value
        read.timing = {**read.timing, **done.timing()}
        self.replica_metrics.call("read", ok=True, timing=done.timing())
        return read

    async def infer(self, batch: np.ndarray, priority: str = "routine") -> tuple[np.ndarray, dict[str, Any]]:
        """Raw network call: preprocessed tensors [B, ...] in, probabilities out (+ timing)."""
        try:
            done = await self.batcher.submit(("infer", batch), len(batch), priority)
        except Exception:
            self.replica_metrics.call("infer", ok=False)
            raise
        self.replica_metrics.call("infer", ok=True, timing=done.timing())
        return done.value, done.timing()

    def identity(self) -> dict[str, Any]:
        return self.reader.model_identity

    def placement(self) -> dict[str, Any]:
        """Where this replica runs: node, replica id, the GPU ids Ray gave it and the device the
        backend uses (operators: which replicas share which GPU)."""
        context = ray.get_runtime_context()
        return {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "node_id": context.get_node_id(),
            "gpu_ids": [str(g) for g in context.get_accelerator_ids().get("GPU", [])],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": str(self.reader.backend.device),
        }

    def metadata(self) -> dict[str, Any]:
        """KServe v2 metadata of the version served now."""
        return raw_metadata(self.task, self.reader.model_identity, self.reader.card)

    # --- one batch ----------------------------------------------------------------------------------
    async def _run_batch(self, payloads: list[tuple[str, Any]]) -> list[Any]:
        # The network runs in a worker thread so requests keep arriving (and queue by priority)
        # while it computes; a promotion takes effect between batches.
        started = time.monotonic()
        results = await asyncio.to_thread(self._compute, payloads)
        size = sum(len(p) if kind == "infer" else 1 for kind, p in payloads)
        self.replica_metrics.batch_done(size, (time.monotonic() - started) * 1000.0, self.batcher.depth())
        return results

    def _compute(self, payloads: list[tuple[str, Any]]) -> list[Any]:
        self.reader.maybe_reload()
        results: list[Any] = [None] * len(payloads)
        reads = [i for i, (kind, _) in enumerate(payloads) if kind == "read"]
        if reads:
            for i, read in zip(reads, self.reader.read_batch([payloads[i][1] for i in reads])):
                results[i] = read
        tensors = [i for i, (kind, _) in enumerate(payloads) if kind == "infer"]
        if tensors:
            arrays = [payloads[i][1] for i in tensors]
            probabilities = self.reader.backend.predict(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
            start = 0
            for i, array in zip(tensors, arrays):
                results[i] = probabilities[start : start + len(array)]
                start += len(array)
        return results

    # --- HTTP: this application's route, /v2/models/{task}/... ---------------------------------------
    async def __call__(self, request: Request) -> Any:
        try:
            version, action = route_model_request(request.url.path, model_route_prefix(self.task))
            if self._auth is None:
                cfg = self._auth_config
                self._auth = RawAccessAuth(
                    TokenService(load_secret(cfg.auth.secret_file), cfg.auth.token_ttl_hours),
                    Database(cfg.database.url),
                )
            self._auth(request.headers.get("authorization"))
            metadata = self.metadata()
            if action == "infer":
                if request.method != "POST":
                    raise V2Error(405, "infer takes POST")
                body, headers = await run_infer(
                    metadata, self.infer, await request.body(), request.headers.get(HEADER_LENGTH), version
                )
                return Response(body, headers=headers)
            if request.method != "GET":
                raise V2Error(405, f"{action or 'metadata'} takes GET")
            check_version(metadata, version)
            if action == "ready":
                return JSONResponse({"name": self.task, "ready": True})
            return JSONResponse(metadata)
        except V2Error as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)


@serve.deployment(name=MODEL_DEPLOYMENTS["ecg"])
class EcgModelDeployment(_ModelDeployment):
    """Batched ECG pre-reads and raw tensors on one replica (CPU here; a GPU or a fraction of one
    on GPU nodes)."""

    task = "ecg"

    def __init__(self, cfg: ServingConfig):
        self._setup(cfg, EcgPreReader)


@serve.deployment(name=MODEL_DEPLOYMENTS["cxr"])
class CxrModelDeployment(_ModelDeployment):
    """Batched chest X-ray pre-reads (findings, triage, Grad-CAM heatmaps) and raw tensors."""

    task = "cxr"
    # Heatmaps come back as small maps in network-input space; the ingress, which holds the image,
    # puts them on it (models.cxr.overlay.render_deferred_heatmaps): kB through Ray instead of MB.
    reader_options = {"defer_overlays": True}

    def __init__(self, cfg: ServingConfig):
        self._setup(cfg, CxrPreReader)


MODEL_CLASSES = {"ecg": EcgModelDeployment, "cxr": CxrModelDeployment}

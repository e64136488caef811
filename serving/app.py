"""The Ray Serve applications: the FastAPI ingress, and one application per model.

    preread        /                 Ingress: the API, web page, DICOM SCP + dispatcher, /metrics
    preread-ecg    /v2/models/ecg    EcgModelDeployment: batched pre-reads and raw tensors
    preread-cxr    /v2/models/cxr    CxrModelDeployment (when a CXR model is configured)

Each model deployment is the HTTP ingress of its own application so that KServe v2 calls
(``/v2/models/{model}/...``) reach the replica that computes them directly — no extra hop through
the ingress, which would cost more CPU per request than the network's own time on a small model.
The ingress calls the same replicas through deployment handles for pre-reads. ``deploy(cfg)``
deploys them in order (models first); `serve deploy configs/serve-cluster.yaml` does the same from
a config file (``model_app_builder``, ``app_builder``).

Deployments are thin: model work is models.ecg.pipeline.EcgPreReader / models.cxr.pipeline
.CxrPreReader (they run and are tested without Ray); batching with priorities is
serving.batching.PriorityBatcher; the ingress wraps serving.api. Replica counts, CPUs/GPUs,
batching and autoscaling come from configs/serving.yaml.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from models.ecg.pipeline import EcgPreReader
from serving import metrics
from serving.api import build_api
from serving.auth import TokenService, load_secret
from serving.batching import PriorityBatcher
from serving.config import DeploymentConfig, ServingConfig, load_config
from serving.kserve import HEADER_LENGTH, RawAccessAuth, V2Error, model_metadata, route_model_request, run_infer
from serving.model_reload import ReloadingReader
from serving.priority import current_priority
from serving.services import RawModel, Services, build_services

log = logging.getLogger("preread.serve")

INGRESS_APP = "preread"
MODEL_DEPLOYMENTS = {"ecg": "ecg-model", "cxr": "cxr-model"}

_services: Services | None = None  # this ingress replica's services (one per replica process)


def current_services() -> Services | None:
    """The replica's services. Looked up through the imported module on purpose: Ray pickles the
    ingress class and the app by value, and a by-value function would see a frozen copy of globals."""
    import serving.app as this_module

    return this_module._services


api = build_api(current_services)


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
        from uvicorn.protocols.http import h11_impl, httptools_impl
    except ImportError:
        return
    httptools_impl.HIGH_WATER_LIMIT = h11_impl.HIGH_WATER_LIMIT = limit


class _ModelDeployment:
    """Shared body of a model deployment: the pre-reader for ``task`` from the registry (following
    promotions), one priority batcher for pre-reads and raw tensors alike, and the direct KServe v2
    route. ``reader_class`` has ``from_registry``."""

    task: str

    def _setup(self, config: dict[str, Any], reader_class) -> None:
        _read_large_bodies_whole()
        cfg = ServingConfig.model_validate(config)
        model = cfg.models[self.task]
        registry = cfg.registry.open()
        self.reader = ReloadingReader(registry, model.ref, lambda: reader_class.from_registry(
            registry, model.ref, cfg.triage_path(self.task), backend=model.backend,
            **model.backend_options(),
        ), interval_s=model.reload_interval_s)
        batching = getattr(cfg.deployments, self.task)
        self.batcher = PriorityBatcher(self._run_batch, batching.max_batch_size, batching.batch_wait_timeout_s,
                                       batching.priority_aging_s, name=self.task)
        self.replica_metrics = metrics.ReplicaMetrics(self.task)
        self._auth_config = cfg  # the raw-access check opens the database on first use
        self._auth: RawAccessAuth | None = None
        log.info("%s model %s loaded on %s", self.task, self.reader.model_identity, self.reader.backend.device)

    # --- called through handles (the ingress) -----------------------------------------------------
    async def read(self, item: Any, priority: str = "routine") -> dict[str, Any]:
        """One pre-read, batched with whatever else waits; ``timing`` gains the queue/compute split."""
        try:
            done = await self.batcher.submit(("read", item), 1, priority)
        except Exception:
            self.replica_metrics.call("read", ok=False)
            raise
        read = done.value
        read["timing"] = {**read.get("timing", {}), **done.timing()}
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
        import os

        import ray

        context = ray.get_runtime_context()
        return {"replica": serve.get_replica_context().replica_id.unique_id, "node_id": context.get_node_id(),
                "gpu_ids": [str(g) for g in context.get_accelerator_ids().get("GPU", [])],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "device": str(self.reader.backend.device)}

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
                results[i] = probabilities[start: start + len(array)]
                start += len(array)
        return results

    # --- HTTP: this application's route, /v2/models/{task}/... ---------------------------------------
    async def __call__(self, request) -> Any:
        from starlette.responses import JSONResponse, Response

        try:
            version, action = route_model_request(request.url.path, model_route_prefix(self.task))
            if self._auth is None:
                from serving.store.db import Database

                cfg = self._auth_config
                self._auth = RawAccessAuth(TokenService(load_secret(cfg.auth.secret_file), cfg.auth.token_ttl_hours),
                                           Database(cfg.database.url))
            self._auth(request.headers.get("authorization"))
            metadata = self.metadata()
            if action == "infer":
                if request.method != "POST":
                    raise V2Error(405, "infer takes POST")
                body, headers = await run_infer(metadata, self.infer, await request.body(),
                                                request.headers.get(HEADER_LENGTH), version)
                return Response(body, headers=headers)
            if request.method != "GET":
                raise V2Error(405, f"{action or 'metadata'} takes GET")
            from serving.kserve import check_version

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

    def __init__(self, config: dict[str, Any]):
        self._setup(config, EcgPreReader)


@serve.deployment(name=MODEL_DEPLOYMENTS["cxr"])
class CxrModelDeployment(_ModelDeployment):
    """Batched chest X-ray pre-reads (findings, triage, Grad-CAM heatmaps) and raw tensors."""

    task = "cxr"

    def __init__(self, config: dict[str, Any]):
        from models.cxr.pipeline import CxrPreReader  # noqa: PLC0415 - only where a CXR model is served

        self._setup(config, CxrPreReader)


MODEL_CLASSES = {"ecg": EcgModelDeployment, "cxr": CxrModelDeployment}


def model_handle(task: str):
    # Not checked at creation: under `serve deploy` the model applications start beside the
    # ingress; calls wait until their replicas are up (readiness says so meanwhile).
    return serve.get_deployment_handle(MODEL_DEPLOYMENTS[task], app_name=model_app_name(task), _check_exists=False)


def model_caller(task: str, handle, method: str = "read"):
    """An async function calling ``handle.<method>`` with the caller's priority (serving.priority)
    and recording the call in the ingress's metrics, with the replica's queue/compute timing."""
    remote = getattr(handle, method)

    async def call(payload, priority: str | None = None):
        started = time.perf_counter()
        try:
            result = await remote.remote(payload, priority or current_priority())
        except Exception:
            metrics.record_model_call(task, method, time.perf_counter() - started, None, ok=False)
            raise
        timing = result.get("timing") if isinstance(result, dict) else result[1]
        metrics.record_model_call(task, method, time.perf_counter() - started, timing)
        return result

    return call


@serve.deployment(name="ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict[str, Any]):
        import serving.app as this_module

        cfg = ServingConfig.model_validate(config)
        tasks = [task for task in MODEL_DEPLOYMENTS if task in cfg.models]
        handles = {task: model_handle(task) for task in tasks}
        services = build_services(cfg, model_caller("ecg", handles["ecg"]), migrate=False)  # the driver migrated
        readers = {}
        for task in tasks:
            services.models_ready[task] = False  # until the model application answers
            asyncio.get_event_loop().create_task(self._await_model(services, task, handles[task]))
            services.raw_models[task] = raw_model(cfg, task, model_caller(task, handles[task], "infer"))
            if task != "ecg":
                readers[task] = model_caller(task, handles[task])
        this_module._services = services
        # DICOM in (C-STORE SCP thread) and the dispatcher (a task on this replica's event loop):
        # see serving/dicom/scp.py for why they live in the ingress rather than a deployment.
        from serving.dicom.dispatcher import DicomRuntime  # noqa: PLC0415

        self._dicom = DicomRuntime(services, readers).start(asyncio.get_event_loop())
        # Replay the durable queue: studies stored before a crash but never read.
        self._recovery = asyncio.get_event_loop().create_task(self._recover(services))

    def __del__(self):
        dicom = getattr(self, "_dicom", None)
        if dicom is not None:
            dicom.stop()  # free the DICOM port for the next replica

    @staticmethod
    async def _await_model(services: Services, task: str, handle) -> None:
        while True:
            try:
                identity = await handle.identity.remote()
                services.models_ready[task] = True
                log.info("model application %s answers: %s", model_app_name(task), identity)
                return
            except Exception as exc:  # not deployed yet, or replicas restarting
                log.warning("model application %s not answering yet: %s", model_app_name(task), exc)
                await asyncio.sleep(2.0)

    @staticmethod
    async def _recover(services: Services) -> None:
        try:
            done = await services.ecg.process_pending()
            if done:
                log.warning("recovered %d stored ECGs that had no AI read", done)
        except Exception:  # never let recovery take the ingress down; rows stay 'received'
            log.exception("recovery of pending ECGs failed")


def raw_metadata(task: str, identity: dict[str, Any], card) -> dict[str, Any]:
    return model_metadata(task, identity, list(card.labels), [int(d) for d in list(card.input.shape)[1:]])


def raw_model(cfg: ServingConfig, task: str, infer) -> RawModel:
    """KServe v2 view of a served network, described from its registry card."""
    registered = cfg.registry.open().resolve(cfg.models[task].ref)  # the card only: no model download
    identity = {"version": registered.version, "architecture": registered.card.architecture,
                "backend": cfg.models[task].backend, "demo": registered.card.demo}
    return RawModel(raw_metadata(task, identity, registered.card), infer)


def _options(deployment, cfg: DeploymentConfig, batching: bool):
    actor_options: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if cfg.resources:
        actor_options["resources"] = dict(cfg.resources)
    options: dict[str, Any] = {"ray_actor_options": actor_options, "max_ongoing_requests": cfg.max_ongoing_requests}
    autoscaling = cfg.autoscaling(batching)
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = cfg.num_replicas
    return deployment.options(**options)


def build_model_app(cfg: ServingConfig, task: str):
    deployment = _options(MODEL_CLASSES[task], getattr(cfg.deployments, task), batching=True)
    # No per-request access log on model replicas: every pre-read and tensor batch would add a
    # line (the ingress keeps its access log; the replicas' numbers are in the metrics).
    deployment = deployment.options(logging_config={"enable_access_log": False})
    return deployment.bind(cfg.model_dump(mode="json"))


def build_app(cfg: ServingConfig):
    """The ingress application (the model applications must be deployed too: see ``deploy``)."""
    return _options(Ingress, cfg.deployments.ingress, batching=False).bind(cfg.model_dump(mode="json"))


@dataclass
class AppSpec:
    name: str
    route_prefix: str
    app: Any


def build_apps(cfg: ServingConfig) -> list[AppSpec]:
    """Every application of the service, in deployment order (models before the ingress)."""
    specs = [AppSpec(model_app_name(task), model_route_prefix(task), build_model_app(cfg, task))
             for task in MODEL_DEPLOYMENTS if task in cfg.models]
    return specs + [AppSpec(INGRESS_APP, "/", build_app(cfg))]


def deploy(cfg: ServingConfig) -> None:
    """Deploy (or update) all applications on the connected Ray Serve instance."""
    for spec in build_apps(cfg):
        serve.run(spec.app, name=spec.name, route_prefix=spec.route_prefix)


def undeploy(cfg: ServingConfig, ingress_only: bool = False) -> None:
    for spec in reversed(build_apps(cfg)):
        if ingress_only and spec.name != INGRESS_APP:
            continue
        serve.delete(spec.name)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def config_from_args(args: dict[str, Any]) -> ServingConfig:
    """The serving config an application of a Ray Serve config file asks for: ``config`` (a
    preread config file; default $PREREAD_CONFIG, else configs/serving.yaml) with ``overrides``
    (a partial config, merged key by key: configs/serve-gpu-node.yaml), validated."""
    overrides = args.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"args.overrides must be a mapping (a partial serving config), got {type(overrides).__name__}")
    base = load_config(args.get("config"))
    return ServingConfig.model_validate(_merge(base.model_dump(mode="json"), overrides)).resolved()


def app_builder(args: dict[str, Any]):
    """Entry point for `serve run` / `serve deploy` of the ingress (args: see ``config_from_args``).
    Deploy the model applications (``model_app_builder``) beside it."""
    from serving.store.db import Database

    cfg = config_from_args(args)
    Database(cfg.database.url).migrate()  # here, once, before any replica starts
    return build_app(cfg)


def model_app_builder(args: dict[str, Any]):
    """Entry point for `serve deploy` of one model application: args ``model`` (ecg|cxr) plus
    ``config_from_args``'s; route_prefix /v2/models/<model> in the Serve config file."""
    task = args.get("model")
    if task not in MODEL_DEPLOYMENTS:
        raise ValueError(f"model_app_builder: args.model must be one of {sorted(MODEL_DEPLOYMENTS)}, got {task!r}")
    cfg = config_from_args(args)
    if task not in cfg.models:
        raise ValueError(f"model {task!r} is not in the serving config's models ({', '.join(cfg.models)})")
    return build_model_app(cfg, task)

"""The Ray Serve applications, composed the way Ray Serve's docs do it:

    preread        /                 Ingress: the API (a FastAPI app built on each replica by
                                     ``ingress_app``: ``@serve.ingress(factory)``), the web page,
                                     the DICOM SCP, the dispatcher, /metrics
    preread-ecg    /v2/models/ecg    EcgModelDeployment (serving/replica/deployment.py)
    preread-cxr    /v2/models/cxr    CxrModelDeployment (when a CXR model is configured)

``deploy(cfg)`` deploys them in order (models first); `serve deploy configs/serve-cluster.yaml`
does the same from a config file through the typed builders ``model_app_builder(ModelAppArgs)``
and ``app_builder(AppArgs)``. The model applications are separate applications (not bound into the
ingress's) so that KServe v2 calls reach their replicas without an ingress hop; the ingress finds
them by name (serving/reading/client.py). Replica counts, CPUs/GPUs, batching and autoscaling
come from configs/serving.yaml.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, field_validator
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment
from ray.serve.handle import DeploymentHandle

from serving.api.app import build_api
from serving.config import ServingConfig, load_config
from serving.config_inference import DeploymentConfig
from serving.reading import priors
from serving.reading.client import model_caller, model_handle, raw_model
from serving.reading.runtime import DicomRuntime
from serving.replica.deployment import (
    INGRESS_APP,
    MODEL_DEPLOYMENTS,
    CxrModelDeployment,
    EcgModelDeployment,
    model_app_name,
    model_route_prefix,
)
from serving.services import Services, build_services
from serving.store.db import Database

log = logging.getLogger("preread.serve")

MODEL_CLASSES = {"ecg": EcgModelDeployment, "cxr": CxrModelDeployment}
__all__ = [
    "INGRESS_APP",
    "MODEL_DEPLOYMENTS",
    "app_builder",
    "build_app",
    "build_apps",
    "build_model_app",
    "config_from_args",
    "deploy",
    "model_app_builder",
    "model_app_name",
    "model_route_prefix",
    "undeploy",
]


def replica_services() -> Services | None:
    """The services of the ingress replica serving this request (None while it starts)."""
    ingress = serve.get_replica_context().servable_object
    return getattr(ingress, "services", None)


def ingress_app() -> FastAPI:
    """The FastAPI factory: Ray Serve calls it on each ingress replica, after ``Ingress.__init__``,
    so nothing of the app is pickled (routes, dependencies and annotations are plain module code)."""
    return build_api(replica_services)


@serve.deployment(name="ingress")
@serve.ingress(ingress_app)
class Ingress:
    def __init__(self, cfg: ServingConfig):
        tasks = [task for task in MODEL_DEPLOYMENTS if task in cfg.models]
        handles = {task: model_handle(task) for task in tasks}
        services = build_services(cfg, model_caller("ecg", handles["ecg"]), migrate=False)  # the driver migrated
        priors.install(services)
        readers = {}
        loop = asyncio.get_event_loop()
        for task in tasks:
            services.models_ready[task] = False  # until the model application answers
            loop.create_task(self._await_model(services, task, handles[task]))
            services.raw_models[task] = raw_model(cfg, task, model_caller(task, handles[task], "infer"))
            if task != "ecg":
                readers[task] = model_caller(task, handles[task])
        self.services = services
        # DICOM in (C-STORE SCP thread) and the dispatcher (a task on this replica's event loop):
        # see serving/ingest/scp.py for why they live in the ingress rather than a deployment.
        # The dispatcher also replays the durable queue: studies stored before a crash but never read.
        self._dicom = DicomRuntime(services, readers).start(loop)

    def __del__(self) -> None:
        dicom = getattr(self, "_dicom", None)
        if dicom is not None:
            dicom.stop()  # free the DICOM port for the next replica

    @staticmethod
    async def _await_model(services: Services, task: str, handle: DeploymentHandle) -> None:
        while True:
            try:
                identity = await handle.identity.remote()
                services.models_ready[task] = True
                log.info("model application %s answers: %s", model_app_name(task), identity)
                return
            except Exception as exc:  # noqa: BLE001 - not deployed yet, or replicas restarting
                log.warning("model application %s not answering yet: %s", model_app_name(task), exc)
                await asyncio.sleep(2.0)


def _options(deployment: Deployment, cfg: DeploymentConfig, batching: bool) -> Deployment:
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


def build_model_app(cfg: ServingConfig, task: str) -> Application:
    deployment = _options(MODEL_CLASSES[task], getattr(cfg.deployments, task), batching=True)
    # No per-request access log on model replicas: every pre-read and tensor batch would add a
    # line (the ingress keeps its access log; the replicas' numbers are in the metrics).
    batching = getattr(cfg.deployments, task)
    deployment = deployment.options(
        logging_config={"enable_access_log": False},
        user_config={
            "max_batch_size": batching.max_batch_size,
            "batch_wait_timeout_s": batching.batch_wait_timeout_s,
            "priority_aging_s": batching.priority_aging_s,
        },
    )  # → reconfigure() on every replica, also on updates
    return deployment.bind(cfg)


def build_app(cfg: ServingConfig) -> Application:
    """The ingress application (the model applications must be deployed too: see ``deploy``)."""
    return _options(Ingress, cfg.deployments.ingress, batching=False).bind(cfg)


@dataclass
class AppSpec:
    name: str
    route_prefix: str
    app: Application


def build_apps(cfg: ServingConfig) -> list[AppSpec]:
    """Every application of the service, in deployment order (models before the ingress)."""
    specs = [
        AppSpec(model_app_name(task), model_route_prefix(task), build_model_app(cfg, task))
        for task in MODEL_DEPLOYMENTS
        if task in cfg.models
    ]
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
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if nested else value
    return merged


class AppArgs(BaseModel):
    """The ``args`` of the ingress application in a Ray Serve config file (configs/serve-cluster.yaml):
    ``config``, a preread config file (default $PREREAD_CONFIG, else configs/serving.yaml), and
    ``overrides``, a partial config merged key by key (configs/serve-gpu-node.yaml)."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = None
    overrides: dict[str, Any] = {}

    @field_validator("overrides", mode="before")
    @classmethod
    def _a_mapping(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"args.overrides must be a mapping (a partial serving config), got {type(value).__name__}")
        return value or {}


class ModelAppArgs(AppArgs):
    """``AppArgs`` plus ``model``: which model application (route_prefix /v2/models/<model>)."""

    model: Literal["ecg", "cxr"]


def config_from_args(args: AppArgs | dict[str, Any]) -> ServingConfig:
    """The serving config an application of a Ray Serve config file asks for, validated."""
    args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
    base = load_config(args.config)
    return ServingConfig.model_validate(_merge(base.model_dump(mode="json"), args.overrides)).resolved()


def app_builder(args: AppArgs) -> Application:
    """Entry point for `serve run` / `serve deploy` of the ingress (typed args: ``AppArgs``).
    Deploy the model applications (``model_app_builder``) beside it."""
    cfg = config_from_args(args)
    Database(cfg.database.url).migrate()  # here, once, before any replica starts
    return build_app(cfg)


def model_app_builder(args: ModelAppArgs) -> Application:
    """Entry point for `serve deploy` of one model application (typed args: ``ModelAppArgs``)."""
    cfg = config_from_args(AppArgs(config=args.config, overrides=args.overrides))
    if args.model not in cfg.models:
        raise ValueError(f"model {args.model!r} is not in the serving config's models ({', '.join(cfg.models)})")
    return build_model_app(cfg, args.model)

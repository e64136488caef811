"""The Ray Serve application: a FastAPI ingress and batched model deployments.

Deployments are thin: the ECG model deployment wraps models.ecg.pipeline.EcgPreReader (which runs
and is tested without Ray); the ingress wraps serving.api. Replica counts, CPUs/GPUs and batching
come from configs/serving.yaml. For a cluster: `serve deploy configs/serve-cluster.yaml`, which
imports ``serving.app:app_builder``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from ray import serve
from ray.serve.handle import DeploymentHandle

from models.ecg.pipeline import EcgInput, EcgPreReader
from serving.api import build_api
from serving.config import DeploymentConfig, ServingConfig, load_config
from serving.kserve import model_metadata
from serving.model_reload import ReloadingReader
from serving.services import RawModel, Services, build_services

log = logging.getLogger("preread.serve")

_services: Services | None = None  # this ingress replica's services (one per replica process)


def current_services() -> Services | None:
    """The replica's services. Looked up through the imported module on purpose: Ray pickles the
    ingress class and the app by value, and a by-value function would see a frozen copy of globals."""
    import serving.app as this_module

    return this_module._services


api = build_api(current_services)


class _BatchedReaderDeployment:
    """Shared set-up of a model deployment: the pre-reader for ``task`` from the registry (following
    promotions), and the batching configured for it. ``reader_class`` has ``from_registry``."""

    task: str

    def _setup(self, config: dict[str, Any], reader_class) -> None:
        cfg = ServingConfig.model_validate(config)
        model = cfg.models[self.task]
        registry = cfg.registry.open()
        self.reader = ReloadingReader(registry, model.ref, lambda: reader_class.from_registry(
            registry, model.ref, cfg.triage_path(self.task), backend=model.backend,
            intra_op_threads=model.intra_op_threads,
        ), interval_s=model.reload_interval_s)
        batching = getattr(cfg.deployments, self.task)
        self.read.set_max_batch_size(batching.max_batch_size)
        self.read.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        log.info("%s model %s loaded", self.task, self.reader.model_identity)

    async def _read(self, items: list) -> list[dict[str, Any]]:
        # The network runs in a worker thread so the next batch can gather while this one computes;
        # a promotion takes effect between batches.
        await asyncio.to_thread(self.reader.maybe_reload)
        return await asyncio.to_thread(self.reader.read_batch, items)

    def identity(self) -> dict[str, Any]:
        return self.reader.model_identity


@serve.deployment(name="ecg-model")
class EcgModelDeployment(_BatchedReaderDeployment):
    """Batched ECG pre-reads on one replica (CPU here; a GPU or a fraction of one on GPU nodes)."""

    task = "ecg"

    def __init__(self, config: dict[str, Any]):
        self._setup(config, EcgPreReader)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def read(self, items: list[EcgInput]) -> list[dict[str, Any]]:
        return await self._read(items)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw network call (KServe v2): preprocessed tensors in, probabilities out."""
        return await asyncio.to_thread(self.reader.backend.predict, batch)


@serve.deployment(name="cxr-model")
class CxrModelDeployment(_BatchedReaderDeployment):
    """Batched chest X-ray pre-reads (findings, triage, Grad-CAM heatmaps) on one replica."""

    task = "cxr"

    def __init__(self, config: dict[str, Any]):
        from models.cxr.pipeline import CxrPreReader  # noqa: PLC0415 - only where a CXR model is served

        self._setup(config, CxrPreReader)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def read(self, items: list) -> list[dict[str, Any]]:
        return await self._read(items)


@serve.deployment(name="ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict[str, Any], ecg_model: DeploymentHandle,
                 cxr_model: DeploymentHandle | None = None):
        import serving.app as this_module

        cfg = ServingConfig.model_validate(config)

        async def read_ecg(item: EcgInput) -> dict[str, Any]:
            return await ecg_model.read.remote(item)

        services = build_services(cfg, read_ecg, migrate=False)  # the driver migrated already
        services.models_ready["ecg"] = True  # the handle was bound after the model replica started

        async def infer_ecg(batch: np.ndarray) -> np.ndarray:
            return await ecg_model.infer.remote(batch)

        services.raw_models["ecg"] = raw_ecg_model(cfg, infer_ecg)
        this_module._services = services
        # DICOM in (C-STORE SCP thread) and the dispatcher (a task on this replica's event loop):
        # see serving/dicom/scp.py for why they live in the ingress rather than a deployment.
        from serving.dicom.dispatcher import DicomRuntime  # noqa: PLC0415

        readers = {}
        if cxr_model is not None:
            async def read_cxr(record) -> dict[str, Any]:
                return await cxr_model.read.remote(record)

            readers["cxr"] = read_cxr
            services.models_ready["cxr"] = True
        self._dicom = DicomRuntime(services, readers).start(asyncio.get_event_loop())
        # Replay the durable queue: studies stored before a crash but never read.
        self._recovery = asyncio.get_event_loop().create_task(self._recover(services))

    def __del__(self):
        dicom = getattr(self, "_dicom", None)
        if dicom is not None:
            dicom.stop()  # free the DICOM port for the next replica

    @staticmethod
    async def _recover(services: Services) -> None:
        try:
            done = await services.ecg.process_pending()
            if done:
                log.warning("recovered %d stored ECGs that had no AI read", done)
        except Exception:  # never let recovery take the ingress down; rows stay 'received'
            log.exception("recovery of pending ECGs failed")


def raw_ecg_model(cfg: ServingConfig, infer) -> RawModel:
    """KServe v2 view of the served ECG network, described from its registry card."""
    registered = cfg.registry.open().resolve(cfg.models["ecg"].ref)  # the card only: no model download
    identity = {"version": registered.version, "architecture": registered.card.architecture,
                "backend": cfg.models["ecg"].backend, "demo": registered.card.demo}
    return RawModel(model_metadata("ecg", identity, list(registered.card.labels), [12, 5000]), infer)


def _options(deployment, cfg: DeploymentConfig, batching: bool):
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "max_ongoing_requests": cfg.max_ongoing_requests,
    }
    if cfg.num_replicas == "auto":
        options["autoscaling_config"] = {
            "min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
            # Keep enough queued work per replica to fill a batch.
            "target_ongoing_requests": max(2, cfg.max_batch_size // 2) if batching else 2,
        }
    else:
        options["num_replicas"] = cfg.num_replicas
    return deployment.options(**options)


def build_app(cfg: ServingConfig):
    config = cfg.model_dump(mode="json")
    ecg = _options(EcgModelDeployment, cfg.deployments.ecg, batching=True).bind(config)
    cxr = _options(CxrModelDeployment, cfg.deployments.cxr, batching=True).bind(config) if "cxr" in cfg.models else None
    return _options(Ingress, cfg.deployments.ingress, batching=False).bind(config, ecg, cxr)


def app_builder(args: dict[str, Any]):
    """Entry point for `serve run` / `serve deploy`: args may name a config file (``config``)."""
    from serving.store.db import Database

    cfg = load_config(args.get("config")).resolved()
    Database(cfg.database.url).migrate()  # here, once, before any replica starts
    return build_app(cfg)

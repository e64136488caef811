"""The same API without Ray: model calls go to an in-process EcgPreReader.

For tests of the HTTP contract, notebooks and debugging; production runs serving.app on Ray Serve.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from models.ecg.pipeline import EcgInput, EcgPreReader
from serving.api.app import build_api
from serving.config import ServingConfig
from serving.reading import priors
from serving.reading.client import raw_model
from serving.services import Services, build_services


def create_local_app(cfg: ServingConfig, reader: EcgPreReader | None = None) -> tuple[FastAPI, Services]:
    if reader is None:
        model = cfg.models["ecg"]
        reader = EcgPreReader.from_registry(
            cfg.registry.open(), model.ref, cfg.triage_path("ecg"), backend=model.backend, **model.backend_options()
        )

    async def read_ecg(item: EcgInput) -> dict[str, Any]:
        return (await asyncio.to_thread(reader.read_batch, [item]))[0]

    services = build_services(cfg, read_ecg)
    priors.install(services)
    services.models_ready["ecg"] = True

    async def infer_ecg(batch, priority=None):
        return await asyncio.to_thread(reader.backend.predict, batch), None

    services.raw_models["ecg"] = raw_model(cfg, "ecg", infer_ecg)
    return build_api(lambda: services), services

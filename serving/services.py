"""The objects one ingress replica works with, built from the serving config.

The API reaches everything through this container, so the same routes run under Ray Serve
(model calls go to a deployment handle) and in-process (model calls go to a local reader).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from serving import logs, memory
from serving.auth.tokens import TokenService, load_secret
from serving.config import ServingConfig
from serving.ingest.dicom import DicomIngest
from serving.ingest.ecg import EcgReadFn, EcgWorkflow
from serving.ingest.validate import IngestLimits
from serving.metrics import watch_worklist
from serving.privacy import PatientKeyer
from serving.store.db import Aging, Database
from serving.store.objects import ObjectStore
from serving.store.work import WorkQueue


@dataclass
class Services:
    config: ServingConfig
    db: Database
    store: ObjectStore
    tokens: TokenService
    ecg: EcgWorkflow
    dicom: DicomIngest
    aging: Aging
    models_ready: dict[str, bool] = field(default_factory=dict)
    # Raw model access for the KServe v2 protocol: name → (metadata, async infer(batch, priority)).
    raw_models: dict[str, RawModel] = field(default_factory=dict)


@dataclass
class RawModel:
    """A served network as tensors in, tensors out (what /v2/models/{name}/infer exposes):
    ``infer(batch, priority)`` → (probabilities, the replica's timing or None)."""

    metadata: dict
    infer: Callable[[np.ndarray, str], Awaitable[tuple[np.ndarray, dict | None]]]


def build_services(config: ServingConfig, ecg_read: EcgReadFn, migrate: bool = True) -> Services:
    memory.return_large_blocks()  # large request buffers go back to the system when freed (serving/memory.py)
    secret = load_secret(config.auth.secret_file)
    logs.install(secrets=[secret, logs.database_password(config.database.url)])  # before anything logs
    db = Database(config.database.url)
    if migrate:
        db.migrate()
    store = ObjectStore(config.storage.root)
    tokens = TokenService(secret, config.auth.token_ttl_hours)
    queue = WorkQueue.from_config(db, config)  # app.py / local.py add the prior comparison (reading room)
    workflow = EcgWorkflow(
        db,
        store,
        ecg_read,
        config.site_ids(),
        mask_names=config.privacy.mask_patient_names,
        mask_ids=config.privacy.mask_patient_ids,
        queue=queue,
        limits=IngestLimits.from_config(config),
        patient_key=PatientKeyer(secret, tuple(config.priors.identity)) if config.priors.enabled else None,
    )
    dicom = DicomIngest.from_config(config, db, store, workflow)
    aging = Aging(**{level.value: minutes for level, minutes in config.worklist.aging_minutes.items()})
    watch_worklist(db, aging)  # preread_worklist_depth counts this database at each scrape
    return Services(config, db, store, tokens, workflow, dicom, aging)

"""The county service on loopback, for the sender's benchmark (bench/send_bench.py) and the tests of
the sender and of the service: the real API, ECG workflow, DICOM ingest, dispatcher and store
in-process (as serving.local runs them), served by uvicorn on a real port behind a FaultProxy, with
stand-in readers unless a reader is given; the config it runs on (configs/serving.yaml with all
state under one folder); a clinic sender's config pointed at it; and the polling both use."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from bench.link_proxy import FaultProxy
from bench.standin_readers import StandInCxrReader
from models.registry import open_registry
from serving.api.app import build_api
from serving.auth.tokens import TokenService, load_secret
from serving.config import ServingConfig, load_config
from serving.reading.runtime import start_local_dicom
from serving.replica.triton.server import free_port
from serving.services import build_services

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass
    (AssertionError naming ``what``)."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class UvicornThread:
    """Serve an ASGI app on a real port (dicomweb-client and the sender speak HTTP, not ASGI)."""

    def __init__(self, app, port: int):
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, 120, 0.05, "uvicorn to start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def registry_holds(registry: str | Path, name: str) -> bool:
    """Whether the model registry at ``registry`` holds a model ``name`` (False if it cannot be opened)."""
    try:
        return not open_registry(registry).is_empty(name)
    except Exception:  # noqa: BLE001 - a registry that is missing or unreadable holds nothing
        return False


def county_config(state: Path, registry: str | Path, port: int | None = None) -> ServingConfig:
    """configs/serving.yaml with its storage, database and key under ``state``, the given model
    registry, HTTP on ``port`` (default: a free one), DICOM off, and a second site "other"."""
    cfg = load_config(REPO / "configs" / "serving.yaml")
    # A model is served only once the registry holds it (the ECG model is always configured).
    models = {name: m for name, m in cfg.models.items() if name == "ecg" or registry_holds(registry, name)}
    return cfg.model_copy(
        update={
            "models": models,
            "http": cfg.http.model_copy(update={"port": port or free_port()}),
            "dicom": cfg.dicom.model_copy(update={"enabled": False}),
            "sites": cfg.sites + [type(cfg.sites[0])(id="other", name="Another township", ae_titles=["OTHERSITE"])],
            "storage": cfg.storage.model_copy(update={"root": state / "objects"}),
            "database": cfg.database.model_copy(update={"url": f"sqlite:///{state / 'preread.db'}"}),
            "registry": cfg.registry.model_copy(update={"uri": str(registry)}),
            "auth": cfg.auth.model_copy(update={"secret_file": state / "secret.key"}),
        }
    ).resolved()


@dataclass
class County:
    """A running county service: its config and services, the proxy the clinics reach it through,
    its HTTP port, a clinic's (site "demo") and a reading doctor's API token, and the ASGI app."""

    cfg: Any
    services: Any
    proxy: FaultProxy
    port: int
    token: str
    reader_token: str
    app: Any = None


def county_service(state: Path, registry: str | None, ecg_reader) -> tuple[County, Callable[[], None]]:
    """(County, closer): the in-process service on a free port, behind a FaultProxy; ECGs read by
    ``ecg_reader``, images by a StandInCxrReader."""
    cfg = county_config(state, registry or state / "no-registry")
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(update={"enabled": False, "study_stable_seconds": 0.3, "poll_seconds": 0.1})
        }
    )

    async def read_ecg(item):  # as serving.local does, without the KServe route (it needs a registry)
        return (await asyncio.to_thread(ecg_reader.read_batch, [item]))[0]

    services = build_services(cfg, read_ecg)
    services.models_ready["ecg"] = True
    app = build_api(lambda: services)
    runtime = start_local_dicom(services, StandInCxrReader())
    server = UvicornThread(app, cfg.http.port).__enter__()
    proxy = FaultProxy(cfg.http.port, seed=7)
    tokens = TokenService(load_secret(cfg.auth.secret_file))
    county = County(
        cfg,
        services,
        proxy,
        cfg.http.port,
        tokens.issue("clinic-a", "grassroots", ["demo"]),
        tokens.issue("county-doctor", "reader", ["demo"]),
        app,
    )

    def close() -> None:
        proxy.close()
        server.__exit__(None, None, None)
        runtime.stop()

    return county, close


def sender_config(tmp_path: Path, county: County, **overrides: Any) -> Path:
    """A sender config (send.yaml) under ``tmp_path``/clinic: the county through its proxy, short
    timeouts and backoff; ``overrides`` update (a dict) or replace (anything else) its keys."""
    state = tmp_path / "clinic"
    state.mkdir(parents=True, exist_ok=True)
    (state / "token.txt").write_text(county.token)
    cfg = {
        "server_url": county.proxy.url,
        "token_file": "token.txt",
        "site": "demo",
        "state_dir": "state",
        "watch_folder": "inbox",
        "watch_poll_s": 0.2,
        "listener": {"enabled": True, "ae_title": "CLINICSEND", "host": "127.0.0.1", "port": free_port()},
        "disk_reserve_mb": 0,
        "retry": {"initial_s": 0.2, "max_s": 1.5, "request_timeout_s": 3.0},
        "results": {"poll_s": 0.5},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = state / "send.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path

"""Fixtures for the service: a registry with a tiny ECG model trained by our own training code,
configs pointing at temporary state (bench.county.county_config), the in-process app, and one
shared Ray Serve instance."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.county import county_config, registry_holds
from serving.auth.tokens import TokenService, load_secret
from serving.config import ServingConfig
from serving.replica.triton.server import free_port  # tests import it from here too
from tests.conftest import REPO_ROOT
from tests.mlflow_store import new_mlflow_store

TINY_ECG_TRAINING = REPO_ROOT / "tests" / "data" / "ecg-tiny.yaml"


def cinc_zip(cinc_dir: Path, record: str) -> bytes:
    """A CinC 2021 record (.hea + .mat) zipped, as an ECG cart's uploader would send it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for suffix in (".hea", ".mat"):
            zf.write(cinc_dir / f"{record}{suffix}", f"{record}{suffix}")
    return buffer.getvalue()


def cinc_records(cinc_dir: Path) -> list[str]:
    return sorted(p.stem for p in cinc_dir.glob("*.hea"))


@pytest.fixture(scope="session")
def ecg_registry(tmp_path_factory) -> str:
    """The location (an MLflow SQLite store URI, as by default) of a real registry holding a tiny
    ECG model trained by training.ecg on simulated ECGs."""
    from models.registry import open_registry
    from training.config import load_train_config
    from training.ecg import train_ecg

    uri = new_mlflow_store(tmp_path_factory.mktemp("registry"))
    config = load_train_config(TINY_ECG_TRAINING)
    config = config.model_copy(update={"checkpoint_dir": tmp_path_factory.mktemp("checkpoints")})
    train_ecg(config, registry=open_registry(uri), progress=False)
    return uri


TINY_CXR_TRAINING = REPO_ROOT / "tests" / "data" / "cxr-tiny.yaml"
# Where the session's Ray app sends its DICOM results (test_orthanc starts Orthanc there).
RESULTS_PACS_PORT = free_port()


@dataclass
class Client:
    """An HTTP client bound to a running app, with token helpers."""

    http: httpx.Client
    cfg: ServingConfig

    def token(self, role: str = "grassroots", sites: tuple[str, ...] = ("demo",), user: str = "test-user") -> str:
        return TokenService(load_secret(self.cfg.auth.secret_file)).issue(user, role, list(sites))

    def auth(self, role: str = "grassroots", sites: tuple[str, ...] = ("demo",), user: str = "test-user") -> dict:
        return {"Authorization": f"Bearer {self.token(role, sites, user)}"}


@pytest.fixture(scope="session")
def ecg_reader(ecg_registry):
    from models.ecg.pipeline import EcgPreReader

    return EcgPreReader.from_registry(ecg_registry, "ecg@champion", REPO_ROOT / "configs" / "triage" / "ecg.yaml")


@pytest.fixture
def local_client(tmp_path, ecg_registry, ecg_reader):
    """The real API and workflow in-process (no Ray), with fresh state for each test."""
    from fastapi.testclient import TestClient

    from serving.local import create_local_app

    cfg = county_config(tmp_path, ecg_registry)
    app, services = create_local_app(cfg, reader=ecg_reader)
    with TestClient(app) as http:
        client = Client(http, cfg)
        client.services = services
        yield client


@pytest.fixture(scope="session")
def cxr_registry(ecg_registry, tmp_path_factory) -> str:
    """The session registry with a tiny CXR model from training.cxr (seconds) added. A training that
    fails is an error of every test that needs it (never a warning and a skip)."""
    from models.registry import open_registry
    from training.config import load_train_config
    from training.cxr import train_cxr

    if registry_holds(ecg_registry, "cxr"):
        return ecg_registry
    config = load_train_config(TINY_CXR_TRAINING)
    config = config.model_copy(update={"checkpoint_dir": tmp_path_factory.mktemp("cxr-checkpoints")})
    train_cxr(config, registry=open_registry(ecg_registry), progress=False)
    return ecg_registry


# Serve's controller gives a starting HTTP proxy 5 s to answer its readiness check and kills it
# after three misses; on a loaded 2-core machine it took longer and serve.start() failed with
# ActorDiedError (ProxyActor "killed by ray.kill"). Health, not speed, is what the tests check.
# (The job's runtime_env reaches the Serve controller: checked in /proc/<pid>/environ.)
SERVE_PATIENCE = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


@pytest.fixture(scope="session")
def serve_client(tmp_path_factory, ecg_registry, cxr_registry):
    """One local Ray + Serve instance for the session (Ray takes ~10 s to start here), with the
    DICOM SCP on a free port and results sent to RESULTS_PACS_PORT (Orthanc in test_orthanc)."""
    import ray
    from ray import serve

    from serving.app import build_app, deploy
    from serving.config import DicomDestination
    from serving.store.db import Database

    state = tmp_path_factory.mktemp("serve-state")
    cfg = county_config(state, ecg_registry)
    cfg = cfg.model_copy(
        update={
            "dicom": cfg.dicom.model_copy(
                update={
                    "enabled": True,
                    "port": free_port(),
                    "study_stable_seconds": 0.5,
                    "poll_seconds": 0.2,
                    "results_destination": DicomDestination(
                        ae_title="ORTHANC", host="127.0.0.1", port=RESULTS_PACS_PORT, timeout_s=10
                    ),
                }
            )
        }
    )
    Database(cfg.database.url).migrate()
    # address="local": a fresh instance of our own, never a cluster another process started here
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0", **SERVE_PATIENCE}},
    )
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    deploy(cfg)  # the model applications, then the ingress
    base = f"http://{cfg.http.host}:{cfg.http.port}"
    with httpx.Client(base_url=base, timeout=120) as http:
        client = Client(http, cfg)
        # Stop and restart the ingress only; the model applications keep serving.
        client.restart = lambda: serve.run(build_app(cfg), name="preread", route_prefix="/")
        client.stop = lambda: serve.delete("preread")
        yield client
    serve.shutdown()
    ray.shutdown()

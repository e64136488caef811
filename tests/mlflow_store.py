"""Fresh MLflow stores for tests, fast.

MLflow builds a new SQLite store by running its schema migrations (~10 s on a 2-core machine);
a test gets a copy of one migrated, empty store instead (milliseconds). A real MLflow tracking
server (``mlflow server``) for the tests that talk to one by URL.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.service_process import ProcessExited, wait_for_http

_template_lock = threading.Lock()
_template: Path | None = None


def _template_db() -> Path:
    """One migrated, empty MLflow SQLite store per test process."""
    global _template
    with _template_lock:
        if _template is None or not _template.is_file():
            from mlflow import MlflowClient

            folder = Path(tempfile.mkdtemp(prefix="preread-mlflow-template-"))
            atexit.register(shutil.rmtree, folder, True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)
            _template = folder / "mlflow.db"
    return _template


def new_mlflow_store(folder: Path) -> str:
    """A new, empty MLflow SQLite store in ``folder`` (artifacts and cache beside it); its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template_db(), folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def mlflow_server_command() -> list[str] | None:
    """How to start `mlflow server` here, or None if only the MLflow client (mlflow-skinny) is installed."""
    try:
        import graphene  # noqa: F401 - the full mlflow package's server dependency
        import gunicorn  # noqa: F401
        import mlflow.server  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "mlflow", "server"]


class MlflowServer:
    """A real MLflow tracking server on a free port with its own SQLite store and artifact folder."""

    def __init__(self, folder: Path, port: int, startup_timeout_s: float = 180.0):
        command = mlflow_server_command()
        if command is None:
            raise RuntimeError("the full mlflow package is not installed (only mlflow-skinny)")
        folder.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = folder / "server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command
                + [
                    "--backend-store-uri",
                    new_mlflow_store(folder / "store"),
                    "--artifacts-destination",
                    str(folder / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            if wait_for_http(f"{self.url}/health", self.process, startup_timeout_s):
                return
        except ProcessExited:
            raise RuntimeError(f"mlflow server exited ({self.process.returncode}): {self.log_tail()}") from None
        self.stop()
        raise RuntimeError(
            f"mlflow server did not answer on {self.url} within {startup_timeout_s:.0f} s: {self.log_tail()}"
        )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server and its uvicorn worker (its own process group, started above)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()

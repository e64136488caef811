"""Run a tritonserver process on a model repository.

The binary comes from the ``nvidia-pytriton`` wheel (Triton 2.51 with the Python backend, built to
run on CPU-only machines too; scripts/install-peers.sh installs it), or from ``$PREREAD_TRITONSERVER``
/ ``tritonserver`` on PATH (a full Triton install, e.g. the NGC container, with its own backends).

What the wheel's Python backend needs, and why this module sets it up:
- the stub is built per Python version: the one for this interpreter is copied next to the
  backend library in a private backend folder;
- the stub links libpython: LD_LIBRARY_PATH gets the interpreter's LIBDIR (and the wheel's libs);
- the stub's embedded Python finds its packages through the ``python3`` first on PATH (it ignores
  PYTHONPATH), so this environment's bin/ goes first on PATH.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("preread.triton")


class TritonNotInstalled(RuntimeError):
    pass


class TritonStartError(RuntimeError):
    pass


@dataclass
class TritonDistribution:
    binary: Path
    backends: Path | None  # the wheel's backends/ (python), or None for a full install
    stubs: Path | None  # python_backend_stubs/<X.Y>/triton_python_backend_stub
    libs: Path | None  # the wheel's bundled shared libraries


def find_tritonserver() -> TritonDistribution:
    explicit = os.environ.get("PREREAD_TRITONSERVER")
    if explicit:
        return TritonDistribution(Path(explicit), None, None, None)
    spec = importlib.util.find_spec("pytriton")  # located, not imported: its Python API is not used
    if spec is not None and spec.submodule_search_locations:
        package = Path(list(spec.submodule_search_locations)[0])
        binary = package / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return TritonDistribution(
                binary,
                package / "tritonserver" / "backends",
                package / "tritonserver" / "python_backend_stubs",
                package.parent / "nvidia_pytriton.libs",
            )
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonDistribution(Path(on_path), None, None, None)
    raise TritonNotInstalled(
        "no tritonserver: install the nvidia-pytriton wheel (scripts/install-peers.sh does), "
        "or set PREREAD_TRITONSERVER to a tritonserver binary"
    )


# Above Ray's worker ports (10002-19999 by default) and below the kernel's ephemeral range.
_FIRST_CHOSEN_PORT = 20000
_chosen_ports: set[int] = set()
_port_random = random.SystemRandom()  # not the global one: training.common.seed_everything seeds it


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections and ``bind(0)`` (net.ipv4.ip_local_port_range)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to now, for a server started a little later; never the same one
    twice in a process. Drawn below the ephemeral range: a port from that range (what ``bind(0)``
    gives) can be taken by any outgoing connection between this choice and the server's bind, and on
    a busy host (Ray keeps dozens of connections open) the server then fails to start."""
    low, _ = ephemeral_port_range()
    candidates = [port for port in range(_FIRST_CHOSEN_PORT, low) if port not in _chosen_ports]
    for port in _port_random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue  # in use
        _chosen_ports.add(port)
        return port
    with socket.socket() as s:  # an unusual port range: let the kernel choose
        s.bind((host, 0))
        port = s.getsockname()[1]
    _chosen_ports.add(port)
    return port


class TritonServer:
    """``with TritonServer(repo) as server: server.http_url`` — started, ready, stopped on exit."""

    def __init__(
        self,
        repository: str | Path,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout_s: float = 180.0,
        log_path: str | Path | None = None,
        extra_args: list[str] | None = None,
    ):
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args or [])
        self._workspace = Path(tempfile.mkdtemp(prefix="preread-triton-"))
        self.log_path = Path(log_path) if log_path else self._workspace / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _prepare(self, dist: TritonDistribution) -> tuple[list[str], dict[str, str]]:
        env = os.environ.copy()
        args = [
            str(dist.binary),
            f"--model-repository={self.repository}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--log-verbose=0",
            "--exit-timeout-secs=10",
            # Tensors of a batch of 12-lead ECGs or radiographs are MBs: start the Python
            # backend's shared memory large enough not to regrow on every request.
            "--backend-config=python,shm-default-byte-size=33554432",
            "--backend-config=python,shm-growth-byte-size=33554432",
        ]
        if dist.backends is not None:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            stub = dist.stubs / version / "triton_python_backend_stub"
            if not stub.is_file():
                raise TritonNotInstalled(f"the Triton wheel has no Python-backend stub for Python {version}")
            backends = self._workspace / "backends"
            shutil.copytree(dist.backends, backends, dirs_exist_ok=True)
            shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
            args.append(f"--backend-directory={backends}")
            libdir = sysconfig.get_config_var("LIBDIR") or ""
            paths = [p for p in (libdir, str(dist.libs or ""), env.get("LD_LIBRARY_PATH", "")) if p]
            env["LD_LIBRARY_PATH"] = ":".join(paths)
            env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return args + self.extra_args, env

    def start(self) -> TritonServer:
        dist = find_tritonserver()
        args, env = self._prepare(dist)
        log.info("starting %s on http %s, grpc %s", dist.binary, self.http_url, self.grpc_url)
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise TritonStartError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        # Triton prints wide tables; the errors are the lines starting with E.
        errors = [line for line in text if line.startswith("E")]
        return "\n".join((errors or text)[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self._workspace / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Triton beside preread: `preread triton` serves a registered model with a real tritonserver (the
nvidia-pytriton wheel's binary, Python backend, dynamic batching), and the triton backend reads
through it over HTTP and gRPC with the same numbers as ONNX Runtime in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import yaml

from bench.county import county_config
from models.backends import load_backend
from models.registry import open_registry
from models.triton_backend import TritonUnavailable
from serving.config_inference import ModelServingConfig
from tests.conftest import REPO_ROOT, require_peer
from tests.serving.conftest import free_port


@pytest.fixture(scope="module")
def triton(tmp_path_factory, ecg_registry):
    """`preread triton` on the session's tiny ECG model, as an operator would run it."""
    require_peer("triton")
    state = tmp_path_factory.mktemp("triton")
    cfg = county_config(state, ecg_registry)
    config_path = state / "serving.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    log_path = state / "triton-cli.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "preread.cli",
                "triton",
                "--config",
                str(config_path),
                "--models",
                "ecg",
                "--repository",
                str(state / "repository"),
                "--threads",
                "1",
                "--priority-levels",
                "--http-port",
                str(http_port),
                "--grpc-port",
                str(grpc_port),
                "--metrics-port",
                str(metrics_port),
                "--log-file",
                str(state / "tritonserver.log"),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                # Triton is installed (require_peer passed): `preread triton` exiting is our failure
                pytest.fail(f"`preread triton` exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Triton not ready in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {
            "http": f"127.0.0.1:{http_port}",
            "grpc": f"127.0.0.1:{grpc_port}",
            "cfg": cfg,
            "repository": state / "repository",
            "metrics": metrics_port,
            "log": state / "tritonserver.log",
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def registered(ecg_registry):
    return open_registry(ecg_registry).resolve("ecg@champion")


def test_the_repository_has_dynamic_batching_priorities_and_the_registry_version(triton, registered):
    config = (triton["repository"] / "ecg" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "max_batch_size: 32" in config
    assert "dynamic_batching" in config and "priority_levels: 3" in config
    assert (triton["repository"] / "ecg" / str(registered.version) / "model.onnx").is_file()
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton["http"])
    served = client.get_model_config("ecg")
    assert served["max_batch_size"] == 32
    assert served["dynamic_batching"]["priority_levels"] == 3
    assert client.is_model_ready("ecg", str(registered.version))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_backend_equals_onnxruntime_in_process(triton, registered, real_ecg_batch, protocol):
    reference = load_backend(registered.path, "onnxruntime", intra_op_threads=1).predict(real_ecg_batch)
    backend = load_backend(registered.path, "triton", url=triton[protocol], protocol=protocol)
    assert backend.model_version == str(registered.version) and backend.output_name == "probabilities"
    probabilities = backend.predict(real_ecg_batch)
    assert probabilities.shape == reference.shape and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, reference, atol=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_concurrent_requests_with_priorities(triton, registered, real_ecg_batch, protocol):
    """Several clients at once (Triton batches them), routine and critical alike; each gets its own rows."""
    reference = load_backend(registered.path, "onnxruntime", intra_op_threads=1).predict(real_ecg_batch)
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module

    def one(i: int) -> np.ndarray:
        client = client_module.InferenceServerClient(triton[protocol])
        rows = real_ecg_batch[i % len(real_ecg_batch) : i % len(real_ecg_batch) + 1]
        tensor = client_module.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        result = client.infer("ecg", [tensor], priority=1 if i % 2 else 3)
        return result.as_numpy("probabilities")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(16)))
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer[0], reference[i % len(real_ecg_batch)], atol=1e-5)


def test_the_served_pre_read_through_the_triton_backend(triton, registered, tmp_path, ecg_registry, cinc_dir):
    """The real API in-process with the ECG model read through Triton: same findings as ONNX Runtime."""
    from fastapi.testclient import TestClient

    from models.ecg.pipeline import EcgPreReader
    from serving.local import create_local_app
    from tests.serving.conftest import Client, cinc_zip

    triage = REPO_ROOT / "configs" / "triage" / "ecg.yaml"
    through_triton = EcgPreReader.from_registry(
        ecg_registry, "ecg@champion", triage, backend="triton", url=triton["grpc"], protocol="grpc"
    )
    local = EcgPreReader.from_registry(ecg_registry, "ecg@champion", triage)
    assert through_triton.model_identity["backend"] == "triton"
    cfg = county_config(tmp_path, ecg_registry)
    app, _ = create_local_app(cfg, reader=through_triton)
    with TestClient(app) as http:
        client = Client(http, cfg)
        response = http.post(
            "/api/v1/ecg",
            content=cinc_zip(cinc_dir, "E07500"),
            headers={**client.auth(), "content-type": "application/zip"},
        )
    assert response.status_code == 201, response.text
    read = response.json()["read"]
    assert read["model"]["backend"] == "triton"
    from datasets.ecg.readers import read_wfdb
    from models.ecg.pipeline import EcgInput

    record = read_wfdb(cinc_dir / "E07500.hea").in_standard_order()
    expected = local.read_batch([EcgInput(record.signals.astype(np.float32), record.sampling_rate)])[0].to_json()
    got = {f["code"]: f["probability"] for f in read["findings"]}
    assert got == pytest.approx({f["code"]: f["probability"] for f in expected["findings"]}, abs=1e-4)
    assert read["triage"]["level"] == expected["triage"]["level"]


def test_priority_levels_are_opt_in(tmp_path, ecg_registry):
    from serving.replica.triton.repository import TritonModelOptions, write_model

    plain = write_model(tmp_path / "plain", ecg_registry, "ecg@champion", TritonModelOptions())
    assert "priority_levels" not in (plain / "config.pbtxt").read_text()
    levels = write_model(
        tmp_path / "levels",
        ecg_registry,
        "ecg@champion",
        TritonModelOptions(priority_levels=True, preferred_batch_sizes=[8, 16]),
    )
    text = (levels / "config.pbtxt").read_text()
    assert "priority_levels: 3" in text and "preferred_batch_size: [ 8, 16 ]" in text
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        TritonModelOptions(max_batch_size=8, preferred_batch_sizes=[16])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_unreachable_triton_is_a_clear_error(registered, protocol):
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TritonUnavailable, match=f"Triton at {url} \\({protocol}\\) is unreachable"):
        load_backend(registered.path, "triton", url=url, protocol=protocol, timeout_s=3)


def test_a_model_version_triton_does_not_serve_is_refused(triton, registered):
    with pytest.raises(TritonUnavailable, match="does not serve model 'ecg' version 999"):
        load_backend(registered.path, "triton", url=triton["http"], protocol="http", model_version="999")


def test_the_python_model_ran_without_errors(triton, registered, real_ecg_batch):
    """Triton answers even when the Python model raised a stray error after computing (it did,
    with numpy's DLPack exchange): the server log must show none."""
    load_backend(registered.path, "triton", url=triton["http"], protocol="http").predict(real_ecg_batch[:2])
    log = triton["log"].read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    errors = [
        line
        for line in log.splitlines()  # Triton error lines; those about the missing GPU are fine
        if line[:1] == "E" and "Cuda" not in line and "NVML" not in line
    ]
    assert not errors, errors


def test_the_triton_backend_needs_a_server_in_the_config():
    with pytest.raises(ValueError, match="backend 'triton' needs a triton section"):
        ModelServingConfig(ref="ecg@champion", backend="triton")
    configured = ModelServingConfig(ref="ecg@champion", backend="triton", triton={"url": "gpu-1:8001"})
    assert configured.backend_options() == {"url": "gpu-1:8001", "protocol": "grpc", "timeout_s": 30.0}


def test_free_ports_are_outside_the_ephemeral_range_and_never_handed_out_twice():
    """A chosen port is bound later (Ray's HTTP port, the SCP, Orthanc for the whole session). One from
    the kernel's ephemeral range (what bind(0) gives) could meanwhile become the local port of any
    outgoing connection, of which Ray keeps hundreds, and the server would not start."""
    import socket

    from serving.replica.triton.server import ephemeral_port_range

    low, high = ephemeral_port_range()
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports), "a port was handed out twice"
    assert not [port for port in ports if low <= port <= high], (low, high, sorted(ports))
    assert min(ports) >= 20000, "Ray's worker ports (10002-19999) are left to Ray"
    for port in ports[:5]:  # and nothing was bound to them
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def real_ecg_batch(cinc_dir) -> np.ndarray:
    from datasets.ecg.readers import read_wfdb
    from datasets.ecg.transforms import preprocess_signals

    batch = []
    for header in sorted(cinc_dir.glob("*.hea"))[:6]:
        record = read_wfdb(header).in_standard_order()
        batch.append(preprocess_signals(record.signals, record.sampling_rate))
    return np.stack(batch).astype(np.float32)

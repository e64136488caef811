"""KServe v2 protocol on our ingress: metadata, infer, errors; tritonclient talks to it."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.ecg.readers import read_wfdb
from datasets.ecg.transforms import preprocess_signals
from datasets.ecg.validate import validate_record


def ecg_tensor(cinc_dir, record="E07500") -> np.ndarray:
    rec = validate_record(read_wfdb(cinc_dir / f"{record}.hea"))
    return preprocess_signals(rec.signals, rec.sampling_rate)[None]


def test_v2_metadata_and_infer_match_the_model_in_process(local_client, cinc_dir, ecg_reader):
    headers = local_client.auth(role="datasci")
    meta = local_client.http.get("/v2/models/ecg", headers=headers)
    assert meta.status_code == 200, meta.text
    assert meta.json()["inputs"][0]["shape"] == [-1, 12, 5000]
    batch = np.concatenate([ecg_tensor(cinc_dir, "E07500"), ecg_tensor(cinc_dir, "E07501")])
    body = {
        "inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}]
    }
    r = local_client.http.post("/v2/models/ecg/infer", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    probs = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    np.testing.assert_allclose(probs, ecg_reader.backend.predict(batch), atol=1e-5)


@pytest.mark.parametrize("shape, status", [([1, 12, 100], 400), ([1, 3, 5000], 400)])
def test_v2_rejects_wrong_shapes(local_client, shape, status):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.0] * int(np.prod(shape))}]}
    r = local_client.http.post("/v2/models/ecg/infer", json=body, headers=local_client.auth(role="datasci"))
    assert r.status_code == status and "shape" in r.text


def test_v2_needs_datasci_or_admin_and_a_known_model(local_client):
    assert local_client.http.get("/v2/models/ecg", headers=local_client.auth(role="grassroots")).status_code == 403
    assert local_client.http.get("/v2/models/nope", headers=local_client.auth(role="admin")).status_code == 404


@pytest.mark.ray
def test_tritonclient_talks_to_preread_on_ray(serve_client, cinc_dir):
    import tritonclient.http as tritonclient_http

    url = str(serve_client.http.base_url).removeprefix("http://").rstrip("/")
    client = tritonclient_http.InferenceServerClient(url=url)
    headers = serve_client.auth(role="datasci")
    assert client.get_model_metadata("ecg", headers=headers)["name"] == "ecg"
    batch = ecg_tensor(cinc_dir)
    tensor = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    result = client.infer(
        "ecg",
        [tensor],
        headers=headers,
        outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=False)],
    )
    probs = result.as_numpy("probabilities")
    assert probs.shape == (1, 7) and np.all((probs >= 0) & (probs <= 1))
    # the binary tensor extension (what tritonclient uses by default) gives the same answer
    binary = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    binary.set_data_from_numpy(batch, binary_data=True)
    again = client.infer(
        "ecg",
        [binary],
        headers=headers,
        outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=False)],
    )
    np.testing.assert_allclose(again.as_numpy("probabilities"), probs, atol=1e-6)


def _binary_request(batch: np.ndarray, parameters: dict | None = None) -> tuple[bytes, dict]:
    import json

    raw = batch.astype(np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(batch.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    if parameters:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def _binary_answer(response) -> np.ndarray:
    import json

    length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:length])
    out = head["outputs"][0]
    assert out["parameters"]["binary_data_size"] == len(response.content) - length
    return np.frombuffer(response.content[length:], dtype=np.float32).reshape(out["shape"])


def test_v2_versions_in_the_path_binary_batches_and_priority(local_client, cinc_dir, ecg_reader):
    headers = local_client.auth(role="datasci")
    version = local_client.http.get("/v2/models/ecg", headers=headers).json()["versions"][0]
    assert local_client.http.get(f"/v2/models/ecg/versions/{version}", headers=headers).status_code == 200
    assert local_client.http.get(f"/v2/models/ecg/versions/{version}/ready", headers=headers).json()["ready"]
    wrong = local_client.http.get("/v2/models/ecg/versions/999", headers=headers)
    assert wrong.status_code == 404 and f"serving version {version}" in wrong.text
    batch = np.concatenate([ecg_tensor(cinc_dir, r) for r in ("E07500", "E07501", "E07502")])
    body, extra = _binary_request(batch, {"priority": "critical"})
    r = local_client.http.post(f"/v2/models/ecg/versions/{version}/infer", content=body, headers={**headers, **extra})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(_binary_answer(r), ecg_reader.backend.predict(batch), atol=1e-5)
    r = local_client.http.post("/v2/models/ecg/versions/999/infer", content=body, headers={**headers, **extra})
    assert r.status_code == 404
    body, extra = _binary_request(batch, {"priority": "whenever"})
    r = local_client.http.post("/v2/models/ecg/infer", content=body, headers={**headers, **extra})
    assert r.status_code == 400 and "priority" in r.json()["error"]


@pytest.mark.parametrize(
    "mutate, status, reason",
    [
        (lambda body, hdr: (body[:-4], hdr), 400, "does not fill shape"),
        (lambda body, hdr: (body, {"Inference-Header-Content-Length": "999999999"}), 400, "does not fit the body"),
        (lambda body, hdr: (b"not json at all", {}), 400, "not a KServe v2 inference request"),
    ],
)
def test_v2_bad_binary_requests_say_why(local_client, cinc_dir, mutate, status, reason):
    body, extra = _binary_request(ecg_tensor(cinc_dir))
    body, extra = mutate(body, extra)
    r = local_client.http.post(
        "/v2/models/ecg/infer", content=body, headers={**local_client.auth(role="datasci"), **extra}
    )
    assert r.status_code == status and reason in r.json()["error"], r.text


@pytest.mark.ray
def test_the_model_deployment_answers_v2_directly_on_ray(serve_client, cinc_dir):
    """/v2/models/ecg/... is the ECG model application's own route: versions, binary batches with
    the replica's timing, auth, and errors — without the ingress."""
    import json

    headers = serve_client.auth(role="datasci")
    meta = serve_client.http.get("/v2/models/ecg", headers=headers)
    assert meta.status_code == 200, meta.text
    version = meta.json()["versions"][0]
    batch = np.concatenate([ecg_tensor(cinc_dir, r) for r in ("E07500", "E07501")])
    body, extra = _binary_request(batch, {"priority": 1})
    r = serve_client.http.post(f"/v2/models/ecg/versions/{version}/infer", content=body, headers={**headers, **extra})
    assert r.status_code == 200, r.text
    probabilities = _binary_answer(r)
    assert probabilities.shape == (2, 7)
    timing = json.loads(r.content[: int(r.headers["inference-header-content-length"])])["parameters"]
    assert timing["priority"] == "critical" and timing["batch_size"] >= 2
    assert serve_client.http.post("/v2/models/ecg/infer", content=body, headers=extra).status_code == 401
    grassroots = serve_client.http.post("/v2/models/ecg/infer", content=body, headers={**serve_client.auth(), **extra})
    assert grassroots.status_code == 403
    assert serve_client.http.get("/v2/models/ecg/versions/999", headers=headers).status_code == 404
    assert serve_client.http.get("/v2/models/ecg/nonsense", headers=headers).status_code == 404
    # the ingress still answers the server-level routes
    assert serve_client.http.get("/v2/health/ready").json() == {"ready": True}

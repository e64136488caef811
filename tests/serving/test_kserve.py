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
    body = {"inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32",
                        "data": batch.ravel().tolist()}]}
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
    tritonclient_http = pytest.importorskip("tritonclient.http")
    url = str(serve_client.http.base_url).removeprefix("http://").rstrip("/")
    client = tritonclient_http.InferenceServerClient(url=url)
    headers = serve_client.auth(role="datasci")
    assert client.get_model_metadata("ecg", headers=headers)["name"] == "ecg"
    batch = ecg_tensor(cinc_dir)
    tensor = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    result = client.infer("ecg", [tensor], headers=headers,
                          outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=False)])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (1, 7) and np.all((probs >= 0) & (probs <= 1))
    # the binary tensor extension (what tritonclient uses by default) gives the same answer
    binary = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    binary.set_data_from_numpy(batch, binary_data=True)
    again = client.infer("ecg", [binary], headers=headers,
                         outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=False)])
    np.testing.assert_allclose(again.as_numpy("probabilities"), probs, atol=1e-6)

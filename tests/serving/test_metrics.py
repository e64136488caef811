"""Prometheus metrics move after reads: model calls with queue vs compute time and batch size (the
replica's timing carried back to the ingress), and the worklist depth counted in the database."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.ecg_whole_read import dicom_ecg_bodies
from tests.serving.conftest import cinc_zip


def scrape(http) -> dict[tuple, float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values, name, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def post_ecg(client, cinc_dir, record):
    r = client.http.post(
        "/api/v1/ecg", content=cinc_zip(cinc_dir, record), headers={"content-type": "application/zip", **client.auth()}
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_worklist_depth_is_counted_in_the_database_at_each_scrape(local_client, cinc_dir):
    before = scrape(local_client.http)
    assert sum(value(before, "preread_worklist_depth", level=lv) for lv in ("critical", "urgent", "routine")) == 0
    levels = [post_ecg(local_client, cinc_dir, record)["level"] for record in ("E07500", "E07501", "HR06000")]
    after = scrape(local_client.http)  # nobody opened the worklist: the gauge still knows
    for level in ("critical", "urgent", "routine"):
        assert value(after, "preread_worklist_depth", level=level) == levels.count(level)
    assert value(after, "preread_requests_total", route="/api/v1/ecg", method="POST", status="201") >= 3


@pytest.mark.ray
def test_model_metrics_move_after_a_read_on_ray(serve_client):
    # An ECG the session's service has never seen: a repeat (test_serve_ecg posts every CinC record,
    # E07502 included) answers with the stored read and calls no model, so the counts would not move.
    (body,) = dicom_ecg_bodies(1)
    before = scrape(serve_client.http)
    r = serve_client.http.post(
        "/api/v1/ecg", content=body, headers={"content-type": "application/dicom", **serve_client.auth()}
    )
    assert r.status_code in (200, 201), r.text
    read = r.json()["read"]
    timing = read["timing"]
    assert {"queue_ms", "compute_ms", "batch_size", "priority"} <= set(timing)
    after = scrape(serve_client.http)
    assert (
        value(after, "preread_model_requests_total", model="ecg", path="read", outcome="ok")
        == value(before, "preread_model_requests_total", model="ecg", path="read", outcome="ok") + 1
    )
    for name, labels in (
        ("preread_model_queue_seconds_count", {"model": "ecg", "priority": "routine"}),
        ("preread_model_compute_seconds_count", {"model": "ecg"}),
        ("preread_model_batch_size_count", {"model": "ecg"}),
        ("preread_model_latency_seconds_count", {"model": "ecg", "path": "read"}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name
    assert (
        value(after, "preread_model_batch_size_sum", model="ecg")
        >= value(before, "preread_model_batch_size_sum", model="ecg") + 1
    )
    assert sum(value(after, "preread_worklist_depth", level=lv) for lv in ("critical", "urgent", "routine")) >= 1


@pytest.mark.ray
@pytest.mark.slow
def test_model_replicas_export_their_own_metrics_through_ray(serve_client, cinc_dir):
    """KServe v2 calls go straight to the model replica; its numbers reach Ray's metrics endpoint."""
    import numpy as np
    import ray

    from tests.serving.test_kserve import ecg_tensor

    batch = ecg_tensor(cinc_dir)
    body = {
        "inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}]
    }
    r = serve_client.http.post("/v2/models/ecg/infer", json=body, headers=serve_client.auth(role="datasci"))
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["outputs"][0]["data"]).size == 7
    port = ray.nodes()[0]["MetricsExportPort"]
    deadline = time.monotonic() + 60  # Ray's metrics agent reports every few seconds
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("ray_preread_replica_requests") and 'path="infer"' in line and 'model="ecg"' in line
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert lines, "no ray_preread_replica_requests{path=infer} on Ray's metrics endpoint"
    assert any('outcome="ok"' in line and float(line.rsplit(" ", 1)[1]) >= 1 for line in lines)

"""The ECG HTTP contract on the real API + workflow + store, in-process (no Ray hop)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from datasets.ecg.record import STANDARD_LEADS
from tests.serving.conftest import cinc_zip

ECG_DCM = Path(get_testdata_file("waveform_ecg.dcm"))


def json_ecg(leads=STANDARD_LEADS, seconds=10.0, rate=500, nan_lead=None, site="demo") -> dict:
    t = np.arange(int(seconds * rate)) / rate
    beat = 0.9 * np.exp(-(((t % 0.8) - 0.2) ** 2) / 0.0004)  # a crude 75 bpm spike train
    signals = {lead: (beat * (1 + i / 12)).round(4).tolist() for i, lead in enumerate(leads)}
    if nan_lead:
        signals[nan_lead][100] = math.nan
    return {
        "sampling_rate": rate,
        "leads": signals,
        "patient": {"id": "530102199001011234", "name": "Zhang^San"},
        "site": site,
    }


def post_json(client, body: dict, **kw):
    # json.dumps writes NaN as the bare token NaN, as real uploaders do
    return client.http.post(
        "/api/v1/ecg", content=json.dumps(body), headers={"content-type": "application/json", **client.auth(**kw)}
    )


def assert_nothing_stored(client):
    assert client.services.db.count() == 0, "a refused ECG left a row behind"
    stored = [p for p in Path(client.cfg.storage.root).rglob("*") if p.is_file()]
    assert stored == [], f"a refused ECG left files behind: {stored}"


def test_real_dicom_ecg_gets_a_read(local_client):
    r = local_client.http.post(
        "/api/v1/ecg",
        content=ECG_DCM.read_bytes(),
        headers={"content-type": "application/dicom", **local_client.auth()},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ai_read" and body["level"] in ("critical", "urgent", "routine")
    assert 0.0 <= body["score"] <= 1.0
    read = body["read"]
    assert read["preliminary"] is True and read["model"]["demo"] is True
    assert {f["code"] for f in read["findings"]} >= {"NORM", "AF", "STACH", "SBRAD", "STE", "WQRS", "PREM"}
    assert 30 < read["measurements"]["heart_rate_bpm"] < 200


def test_same_object_twice_is_idempotent(local_client, cinc_dir):
    body = cinc_zip(cinc_dir, "E07500")
    first = local_client.http.post(
        "/api/v1/ecg", content=body, headers={"content-type": "application/zip", **local_client.auth()}
    )
    again = local_client.http.post(
        "/api/v1/ecg", content=body, headers={"content-type": "application/zip", **local_client.auth()}
    )
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["study_uid"] == first.json()["study_uid"]
    assert local_client.services.db.count() == 1


def test_multipart_upload_with_site_field(local_client, cinc_dir):
    files = {"file": ("E07501.zip", cinc_zip(cinc_dir, "E07501"), "application/zip")}
    r = local_client.http.post("/api/v1/ecg", files=files, data={"site": "demo"}, headers=local_client.auth())
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "case, field",
    [
        ("three_leads", "leads"),
        ("one_second", "duration"),
        ("nan", "signals.V2"),
        ("corrupt_dicom", "file"),
        ("not_an_ecg", "file"),
        ("low_rate", "sampling_rate"),
    ],
)
def test_bad_ecg_is_refused_with_the_field_and_nothing_stored(local_client, case, field):
    if case == "three_leads":
        r = post_json(local_client, json_ecg(leads=("I", "II", "V1")))
    elif case == "one_second":
        r = post_json(local_client, json_ecg(seconds=1.0))
    elif case == "nan":
        r = post_json(local_client, json_ecg(nan_lead="V2"))
    elif case == "low_rate":
        r = post_json(local_client, json_ecg(rate=50))
    elif case == "corrupt_dicom":
        data = ECG_DCM.read_bytes()
        r = local_client.http.post(
            "/api/v1/ecg",
            content=data[: len(data) // 3],
            headers={"content-type": "application/dicom", **local_client.auth()},
        )
    else:
        r = local_client.http.post(
            "/api/v1/ecg",
            content=b"hello, this is not an ECG" * 10,
            headers={"content-type": "application/octet-stream", **local_client.auth()},
        )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"].startswith(field), detail
    assert detail["reason"]
    assert_nothing_stored(local_client)


def test_missing_leads_are_named(local_client):
    r = post_json(local_client, json_ecg(leads=("I", "II", "V1")))
    reason = r.json()["detail"]["reason"]
    for lead in ("V2", "V6"):
        assert lead in reason


def test_body_over_the_limit_is_refused(local_client):
    limit = local_client.cfg.limits.max_ecg_bytes
    r = local_client.http.post(
        "/api/v1/ecg", content=b"{" + b" " * limit, headers={"content-type": "application/json", **local_client.auth()}
    )
    assert r.status_code == 413
    assert_nothing_stored(local_client)


def test_auth_is_required_and_scoped(local_client, cinc_dir):
    body = cinc_zip(cinc_dir, "E07502")
    headers = {"content-type": "application/zip"}
    assert local_client.http.post("/api/v1/ecg", content=body, headers=headers).status_code == 401
    bad = {**headers, "Authorization": "Bearer not-a-token"}
    assert local_client.http.post("/api/v1/ecg", content=body, headers=bad).status_code == 401
    reader = {**headers, **local_client.auth(role="reader")}
    assert local_client.http.post("/api/v1/ecg", content=body, headers=reader).status_code == 403
    other_site = {**headers, **local_client.auth(sites=("other",))}
    assert local_client.http.post("/api/v1/ecg?site=demo", content=body, headers=other_site).status_code == 403
    assert_nothing_stored(local_client)

    assert (
        local_client.http.post("/api/v1/ecg", content=body, headers={**headers, **local_client.auth()}).status_code
        == 201
    )
    demo_reader = local_client.http.get("/api/v1/worklist", headers=local_client.auth(role="reader"))
    other_reader = local_client.http.get("/api/v1/worklist", headers=local_client.auth(role="reader", sites=("other",)))
    assert demo_reader.json()["count"] == 1 and other_reader.json()["count"] == 0
    uid = demo_reader.json()["items"][0]["study_uid"]
    assert local_client.http.get(f"/api/v1/studies/{uid}", headers=local_client.auth(role="reader")).status_code == 200
    hidden = local_client.http.get(f"/api/v1/studies/{uid}", headers=local_client.auth(role="reader", sites=("other",)))
    assert hidden.status_code == 404
    datasci = local_client.http.get("/api/v1/worklist", headers=local_client.auth(role="datasci"))
    assert datasci.status_code == 403


def test_patient_identifiers_are_masked(local_client):
    r = post_json(local_client, json_ecg())
    assert r.status_code == 201, r.text
    item = local_client.http.get("/api/v1/worklist", headers=local_client.auth(role="reader")).json()["items"][0]
    assert item["patient_name"] == "Z**** S**"
    assert item["patient_id"].endswith("1234") and "5301" not in item["patient_id"]


def test_health_ready_and_metrics_need_no_token(local_client):
    assert local_client.http.get("/healthz").json() == {"status": "ok"}
    ready = local_client.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    post_json(local_client, json_ecg())
    text = local_client.http.get("/metrics").text
    assert "preread_ingested_total" in text and "preread_ai_reads_total" in text


def test_reads_use_the_sending_sites_operating_points(tmp_path, ecg_registry, ecg_reader, cinc_dir):
    """A card with per-site thresholds (`preread evaluate --write-site-thresholds`): the demo site's
    ECGs are called at its own PREM threshold, the other site's at the card's. (PREM: a network finding;
    AF is re-stated from its definition on the rhythm, whatever a threshold says.)"""
    from fastapi.testclient import TestClient

    from bench.county import county_config
    from models.card import SITE_THRESHOLDS_KEY
    from models.ecg.pipeline import EcgPreReader
    from serving.local import create_local_app
    from tests.serving.conftest import Client

    points = {
        "computed_at": "2026-11-30T08:00:00+00:00",
        "source": "worklist export",
        "sites": {"demo": {"PREM": {"threshold": 0.0}}},
    }
    card = ecg_reader.card.model_copy(update={"metrics": {**ecg_reader.card.metrics, SITE_THRESHOLDS_KEY: points}})
    reader = EcgPreReader(ecg_reader.backend, card, ecg_reader.rules)
    cfg = county_config(tmp_path, ecg_registry)
    app, _ = create_local_app(cfg, reader=reader)
    with TestClient(app) as http:
        client = Client(http, cfg)
        reads = {}
        for site, record in (("demo", "E07501"), ("other", "E07502")):
            r = http.post(
                f"/api/v1/ecg?site={site}",
                content=cinc_zip(cinc_dir, record),
                headers={**client.auth(sites=(site,)), "content-type": "application/zip"},
            )
            assert r.status_code == 201, r.text
            reads[site] = r.json()["read"]
    prem = {site: next(f for f in read["findings"] if f["code"] == "PREM") for site, read in reads.items()}
    assert prem["demo"]["threshold"] == 0.0 and prem["demo"]["positive"] is True
    assert prem["other"]["threshold"] == ecg_reader.card.thresholds["PREM"]
    assert reads["demo"]["operating_point"]["site"] == "demo" and reads["other"]["operating_point"]["site"] is None


def test_another_sites_ecg_cannot_be_joined_or_seen(local_client, cinc_dir):
    """Re-sending the bytes (or the UIDs) of another site's ECG is refused, not answered with that
    site's study and read."""
    body = cinc_zip(cinc_dir, "E07503")
    first = local_client.http.post(
        "/api/v1/ecg?site=demo",
        content=body,
        headers={**local_client.auth(sites=("demo",)), "content-type": "application/zip"},
    )
    assert first.status_code == 201
    again = local_client.http.post(
        "/api/v1/ecg?site=other",
        content=body,
        headers={**local_client.auth(sites=("other",)), "content-type": "application/zip"},
    )
    assert again.status_code == 409 and "cannot be used by this site" in again.text and "demo" not in again.text
    assert first.json()["study_uid"] not in again.text and "findings" not in again.text
    dcm = ECG_DCM.read_bytes()
    assert (
        local_client.http.post(
            "/api/v1/ecg?site=demo",
            content=dcm,
            headers={**local_client.auth(sites=("demo",)), "content-type": "application/dicom"},
        ).status_code
        == 201
    )
    refused = local_client.http.post(
        "/api/v1/ecg?site=other",
        content=dcm,
        headers={**local_client.auth(sites=("other",)), "content-type": "application/dicom"},
    )
    assert refused.status_code == 409

"""The reading worklist through Ray Serve: login, claim, sign and FHIR on the real ingress (the router's
closures travel to the replica pickled by value)."""

from __future__ import annotations

import json

import pytest

from serving.auth.users import create_user
from serving.store.db import Database
from tests.serving.worklist_fixtures import ecg_json

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_reader_flow_on_ray_serve(serve_client):
    c = serve_client
    db = Database(c.cfg.database.url)
    create_user(db, "serve-reader", "serve-reader-pw", "reader", ["demo"])
    r = c.http.post(
        "/api/v1/ecg",
        content=json.dumps(ecg_json(bpm=180, seed=77)),
        headers={"content-type": "application/json", **c.auth()},
    )
    assert r.status_code in (200, 201), r.text
    uid = r.json()["study_uid"]
    login = c.http.post("/api/v1/login", json={"username": "serve-reader", "password": "serve-reader-pw"})
    assert login.status_code == 200, login.text
    h = {"Authorization": f"Bearer {login.json()['token']}"}
    assert c.http.get("/", headers={}).status_code == 200
    assert c.http.get(f"/api/v1/studies/{uid}/ecg", headers=h).status_code == 200
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=h).status_code == 200
    signed = c.http.post(f"/api/v1/studies/{uid}/sign", headers=h, json={"agree": True, "impression": "seen"})
    assert signed.status_code == 200, signed.text
    fhir = c.http.get(f"/fhir/DiagnosticReport?study={uid}", headers=h)
    assert fhir.status_code == 200 and fhir.json()["status"] == "final"
    assert c.http.post("/api/v1/logout", headers=h).status_code == 200
    assert c.http.get("/api/v1/worklist", headers=h).status_code == 401
    db.engine.dispose()

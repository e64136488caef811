"""Authorization matrix: every role × endpoint × own/other site → allow, deny, or allowed-but-hidden.

One study at site ``demo``. A principal's "own" site is demo, "other" is a site it does not share;
admin and datasci hold their usual scopes. Deny means 401/403/404 (another site's study answers 404 so
its existence is not revealed); allow means anything else (a 409 for signing without a claim is an
allowed call that conflicts); hidden means 200 without the study in the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.auth.tokens import TokenService, load_secret
from tests.serving.conftest import Client, make_config
from tests.serving.worklist_fixtures import ecg_json

ROLES = ["grassroots", "reader", "datasci", "admin"]
WHERE = ["own", "other"]
ALLOW, DENY, HIDDEN = "allow", "deny", "hidden"
SITE_READERS = ("grassroots", "reader", "admin")

# endpoint name → (method, path template, body or None)
ENDPOINTS = {
    "post_ecg": ("POST", "/api/v1/ecg?site=demo", "ecg"),
    "worklist": ("GET", "/api/v1/worklist", None),
    "worklist_site": ("GET", "/api/v1/worklist?site=demo", None),
    "study": ("GET", "/api/v1/studies/{uid}", None),
    "ecg_signals": ("GET", "/api/v1/studies/{uid}/ecg", None),
    "report": ("GET", "/api/v1/studies/{uid}/report", None),
    "fhir": ("GET", "/fhir/DiagnosticReport?study={uid}", None),
    "claim_release": ("POST", "/api/v1/studies/{uid}/claim", None),
    "sign": ("POST", "/api/v1/studies/{uid}/sign", {"agree": True}),
    "submissions": ("GET", "/api/v1/submissions", None),
    "export": ("GET", "/api/v1/exports/signed-reads", None),
    "export_training": ("GET", "/api/v1/exports/training.zip", None),
    "refuse_ai": ("POST", "/api/v1/studies/{uid}/refuse-ai", None),
    "audit": ("GET", "/api/v1/audit", None),
    "audit_verify": ("GET", "/api/v1/audit/verify", None),
    "me": ("GET", "/api/v1/me", None),
    "logout": ("POST", "/api/v1/logout", None),
}


def expected(endpoint: str, role: str, where: str) -> str:
    own = where == "own" or role == "admin"
    if endpoint in ("me", "logout"):
        return ALLOW
    if endpoint == "post_ecg":
        return ALLOW if role in ("grassroots", "admin") and own else DENY
    if endpoint == "worklist":
        return (ALLOW if own else HIDDEN) if role in SITE_READERS else DENY
    if endpoint in ("worklist_site", "study", "ecg_signals", "report", "fhir"):
        return ALLOW if role in SITE_READERS and own else DENY
    if endpoint in ("claim_release", "sign"):
        return ALLOW if role in ("reader", "admin") and own else DENY
    if endpoint == "submissions":
        return (ALLOW if own else HIDDEN) if role in ("grassroots", "admin") else DENY
    if endpoint in ("export", "export_training"):
        return ALLOW if role in ("datasci", "admin") else DENY
    if endpoint == "refuse_ai":
        return ALLOW if role in SITE_READERS and own else DENY
    if endpoint in ("audit", "audit_verify"):
        return ALLOW if role == "admin" else DENY
    raise AssertionError(endpoint)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, ecg_registry, ecg_reader):
    from serving.local import create_local_app

    cfg = make_config(tmp_path_factory.mktemp("authz"), ecg_registry)
    cfg = cfg.model_copy(update={"auth": cfg.auth.model_copy(update={"users": []})})
    app, services = create_local_app(cfg, reader=ecg_reader)
    with TestClient(app) as http:
        client = Client(http, cfg)
        body = json.dumps(ecg_json(bpm=72, seed=11))
        r = http.post("/api/v1/ecg", content=body, headers={"content-type": "application/json", **client.auth()})
        assert r.status_code == 201, r.text
        client.uid = r.json()["study_uid"]
        client.ecg_body = body
        client.tokens = TokenService(load_secret(cfg.auth.secret_file))
        yield client


def _token(m, role: str, where: str) -> dict:
    sites = ["*"] if role == "admin" else (["demo"] if where == "own" else ["other"])
    return {"Authorization": f"Bearer {m.tokens.issue(f'{role}-{where}', role, sites)}"}


def _call(m, endpoint: str, headers: dict):
    method, template, body = ENDPOINTS[endpoint]
    path = template.format(uid=m.uid)
    if body == "ecg":
        return m.http.post(path, content=m.ecg_body, headers={"content-type": "application/json", **headers})
    if method == "POST":
        return m.http.post(path, json=body, headers=headers)
    return m.http.get(path, headers=headers)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_authorization_matrix(matrix, endpoint, role, where):
    want = expected(endpoint, role, where)
    headers = _token(matrix, role, where)
    r = _call(matrix, endpoint, headers)
    if endpoint == "claim_release" and r.status_code == 200:
        assert matrix.http.post(f"/api/v1/studies/{matrix.uid}/release", headers=headers).status_code == 200
    if want == DENY:
        assert r.status_code in (401, 403, 404), f"{role}/{where} should be refused {endpoint}: {r.status_code} {r.text[:200]}"
        return
    assert r.status_code not in (401, 403, 404), f"{role}/{where} should be allowed {endpoint}: {r.status_code} {r.text[:200]}"
    if endpoint in ("worklist", "submissions"):
        listed = {i["study_uid"] for i in r.json()["items"]}
        assert (matrix.uid in listed) == (want == ALLOW), f"{role}/{where} {endpoint}: visibility wrong"
    if endpoint == "export" and role == "datasci":
        assert matrix.uid not in r.text


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS])
def test_anonymous_and_forged_tokens_are_refused(matrix, endpoint):
    assert _call(matrix, endpoint, {}).status_code == 401
    forged = TokenService("x" * 40).issue("mallory", "admin", ["*"])
    assert _call(matrix, endpoint, {"Authorization": f"Bearer {forged}"}).status_code == 401


def test_page_and_login_need_no_token(matrix):
    page = matrix.http.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("app.js", "style.css"):
        assert matrix.http.get(f"/static/{name}").status_code == 200
    assert matrix.http.get("/static/../config.py").status_code == 404
    for name in ("index.html", "app.js", "style.css"):  # no CDN: everything ships with the service
        text = (Path(__file__).resolve().parents[2] / "serving" / "web" / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    assert matrix.http.post("/api/v1/login", json={"username": "x", "password": "y"}).status_code == 401

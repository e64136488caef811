"""Authorization matrix: every role × own/other site × every data route (the API, FHIR and DICOMweb)
→ the exact status the route must answer, what it must list, and the audit of each refusal.

Two studies at site ``demo``: an ECG (JSON over HTTP) and a CT (STOW-RS) with a patient name, ID and
birth date. A principal's "own" site is demo, "other" a site it does not share; admin holds "*". What
each role may do is docs/threat-model.md's "Actors" and docs/dicom.md's roles table:

- grassroots: sends for its sites; sees its submissions, their studies and final reports; not the
  reading worklist, not claims or signatures;
- reader: the worklist of its sites; views, claims, signs;
- datasci: de-identified exports and monitoring only: no identified study, image, SR or metadata;
- admin: everything.

Another site's study answers 404 (its existence is not revealed). Every refused call (401/403/404) is
an audit event with the user, the path and the status.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from bench.county import county_config
from serving.auth.tokens import TokenService, load_secret
from tests.serving.conftest import Client
from tests.serving.worklist_fixtures import ecg_json

ROLES = ["grassroots", "reader", "datasci", "admin"]
WHERE = ["own", "other"]
SITE_VIEWERS = ("grassroots", "reader", "admin")
PATIENT = {"name": "Wang^Fang", "id": "530102199001010042", "birth": "19900101"}
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=matrix'

# route → (method, path template, body kind or None). {ecg}: the ECG study; {ct}, {series}, {sop}: the CT.
ROUTES = {
    "post_ecg": ("POST", "/api/v1/ecg?site=demo", "ecg"),
    "worklist": ("GET", "/api/v1/worklist", None),
    "worklist_site": ("GET", "/api/v1/worklist?site=demo", None),
    "study": ("GET", "/api/v1/studies/{ecg}", None),
    "ecg_signals": ("GET", "/api/v1/studies/{ecg}/ecg", None),
    "image": ("GET", "/api/v1/studies/{ct}/image.png", None),
    "report": ("GET", "/api/v1/studies/{ecg}/report", None),
    "fhir": ("GET", "/fhir/DiagnosticReport?study={ecg}", None),
    "claim_release": ("POST", "/api/v1/studies/{ecg}/claim", None),
    "sign": ("POST", "/api/v1/studies/{ecg}/sign", {"agree": True}),
    "submissions": ("GET", "/api/v1/submissions", None),
    "export": ("GET", "/api/v1/exports/signed-reads", None),
    "export_training": ("GET", "/api/v1/exports/training.zip", None),
    "monitoring": ("GET", "/api/v1/monitoring", None),
    "refuse_ai": ("POST", "/api/v1/studies/{ct}/refuse-ai", None),
    "audit": ("GET", "/api/v1/audit", None),
    "audit_verify": ("GET", "/api/v1/audit/verify", None),
    "me": ("GET", "/api/v1/me", None),
    "logout": ("POST", "/api/v1/logout", None),
    "stow": ("POST", "/dicomweb/studies?site=demo", "stow"),
    "qido_studies": ("GET", "/dicomweb/studies", None),
    "qido_series": ("GET", "/dicomweb/studies/{ct}/series", None),
    "qido_instances": ("GET", "/dicomweb/studies/{ct}/series/{series}/instances", None),
    "metadata": ("GET", "/dicomweb/studies/{ct}/metadata", None),
    "wado_study": ("GET", "/dicomweb/studies/{ct}", None),
    "wado_instance": ("GET", "/dicomweb/studies/{ct}/series/{series}/instances/{sop}", None),
}
LISTS = {"worklist": "items", "worklist_site": "items", "submissions": "items"}


def expected(route: str, role: str, where: str) -> int:
    """The exact status ``role`` at its ``where`` site gets from ``route``."""
    own = where == "own" or role == "admin"
    hidden = 404  # another site's study: as if it did not exist
    if route in ("me", "logout"):
        return 200
    if route in ("post_ecg", "stow"):  # the study is there already: a re-send is an idempotent 200
        return (200 if own else 403) if role in ("grassroots", "admin") else 403
    if route in ("worklist", "worklist_site"):
        if role not in ("reader", "admin"):
            return 403
        return 200 if own or route == "worklist" else 403
    if route == "submissions":
        return 200 if role in ("grassroots", "admin") else 403
    if route in (
        "study",
        "ecg_signals",
        "image",
        "report",
        "fhir",
        "refuse_ai",
        "qido_series",
        "qido_instances",
        "metadata",
        "wado_study",
        "wado_instance",
    ):
        return (200 if own else hidden) if role in SITE_VIEWERS else 403
    if route == "qido_studies":
        return 200 if role in SITE_VIEWERS else 403
    if route == "claim_release":
        return (200 if own else hidden) if role in ("reader", "admin") else 403
    if route == "sign":  # allowed, but nobody holds the claim: a conflict
        return (409 if own else hidden) if role in ("reader", "admin") else 403
    if route in ("export", "export_training", "monitoring"):
        return 200 if role in ("datasci", "admin") else 403
    if route in ("audit", "audit_verify"):
        return 200 if role == "admin" else 403
    raise AssertionError(route)


def listed(route: str, role: str, where: str) -> bool:
    """Whether a list route's answer shows the demo studies."""
    return where == "own" or role == "admin"


def stow_body(data: bytes) -> bytes:
    return b"--matrix\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--matrix--\r\n"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, ecg_registry, ecg_reader):
    from serving.local import create_local_app

    cfg = county_config(tmp_path_factory.mktemp("authz"), ecg_registry)
    cfg = cfg.model_copy(update={"auth": cfg.auth.model_copy(update={"users": []})})
    app, services = create_local_app(cfg, reader=ecg_reader)
    with TestClient(app) as http:
        client = Client(http, cfg)
        client.services = services
        body = json.dumps(ecg_json(bpm=72, seed=11))
        r = http.post("/api/v1/ecg", content=body, headers={"content-type": "application/json", **client.auth()})
        assert r.status_code == 201, r.text
        client.ecg_body, client.uids = body, {"ecg": r.json()["study_uid"]}
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ct.PatientName, ct.PatientID, ct.PatientBirthDate = PATIENT["name"], PATIENT["id"], PATIENT["birth"]
        buffer = io.BytesIO()
        ct.save_as(buffer, enforce_file_format=True)
        client.ct_body = stow_body(buffer.getvalue())
        r = http.post(
            "/dicomweb/studies?site=demo", content=client.ct_body, headers={"content-type": STOW_TYPE, **client.auth()}
        )
        assert r.status_code == 200, r.text
        client.uids.update(ct=str(ct.StudyInstanceUID), series=str(ct.SeriesInstanceUID), sop=str(ct.SOPInstanceUID))
        client.tokens = TokenService(load_secret(cfg.auth.secret_file))
        yield client


def _token(m, role: str, where: str, user: str) -> dict:
    sites = ["*"] if role == "admin" else (["demo"] if where == "own" else ["other"])
    return {"Authorization": f"Bearer {m.tokens.issue(user, role, sites)}"}


def _call(m, route: str, headers: dict):
    method, template, body = ROUTES[route]
    path = template.format(**m.uids)
    if body == "ecg":
        return m.http.post(path, content=m.ecg_body, headers={"content-type": "application/json", **headers})
    if body == "stow":
        return m.http.post(path, content=m.ct_body, headers={"content-type": STOW_TYPE, **headers})
    if method == "POST":
        return m.http.post(path, json=body, headers=headers)
    return m.http.get(path, headers=headers)


def _refusals(m, user: str) -> list[dict]:
    from serving.store import audit

    return [audit.as_dict(e) for e in audit.entries(m.services.db, limit=50, user=user, action="refused")]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_authorization_matrix(matrix, route, role, where):
    want = expected(route, role, where)
    user = f"{role}-{where}-{route}"
    headers = _token(matrix, role, where, user)
    r = _call(matrix, route, headers)
    assert r.status_code == want, f"{role}/{where} {route}: {r.status_code}, want {want}: {r.text[:300]}"
    if route == "claim_release" and want == 200:
        assert matrix.http.post(f"/api/v1/studies/{matrix.uids['ecg']}/release", headers=headers).status_code == 200
    refused = _refusals(matrix, user)
    if want in (401, 403, 404):
        assert len(refused) == 1, f"{role}/{where} {route}: the refusal is not audited ({refused})"
        assert refused[0]["detail"]["status"] == want
        assert refused[0]["detail"]["path"] == ROUTES[route][1].split("?")[0].format(**matrix.uids)
        assert refused[0]["role"] == role
        return
    assert refused == [], f"{role}/{where} {route}: an allowed call audited as refused"
    if route in LISTS:
        uids = {i["study_uid"] for i in r.json()[LISTS[route]]}
        assert (matrix.uids["ecg"] in uids) == listed(route, role, where), f"{role}/{where} {route}: visibility"
    if route == "qido_studies":
        uids = {s["0020000D"]["Value"][0] for s in r.json()}
        assert (matrix.uids["ct"] in uids) == listed(route, role, where), f"{role}/{where} {route}: visibility"
    if route == "metadata":  # masked as the worklist masks them (privacy.*): identity is in the original only
        text = r.text
        assert PATIENT["id"] not in text and "Wang" not in text and PATIENT["birth"] not in text, text[:500]
    if route == "export" and role == "datasci":
        assert matrix.uids["ecg"] not in r.text and PATIENT["id"] not in r.text


@pytest.mark.parametrize("route", list(ROUTES))
def test_anonymous_and_forged_tokens_are_refused_and_audited(matrix, route):
    from serving.store import audit

    path = ROUTES[route][1].split("?")[0].format(**matrix.uids)

    def refusals() -> list[dict]:
        entries = [audit.as_dict(e) for e in audit.entries(matrix.services.db, limit=5000, action="refused")]
        return [e for e in entries if e["detail"]["path"] == path and e["detail"]["status"] == 401]

    assert _call(matrix, route, {}).status_code == 401
    anonymous = refusals()
    assert anonymous and all(e["user"] is None for e in anonymous), "an anonymous call is audited"
    forged = TokenService("x" * 40).issue("mallory", "admin", ["*"])
    assert _call(matrix, route, {"Authorization": f"Bearer {forged}"}).status_code == 401
    # the same refusal again within the window is counted, not a new row (serving/store/audit.py
    # record_view); a forged token's claims are never believed: no "mallory" anywhere
    assert all(e["user"] is None for e in refusals())
    assert not [e for e in audit.entries(matrix.services.db, limit=5000, user="mallory")]


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

"""Access and audit holes an outside test found (issue 17, items 2, 4, 5 and 6): DICOMweb accesses
audited; a site sending into another site's study refused without saying whose and recorded as a
security event; failed logins throttled per account and per address with a lockout; a wrong called AE
title rejected. (Items 1 and 3, who may see what, are the authorization matrix: test_authz_matrix.py.)"""

from __future__ import annotations

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from bench.county import county_config
from serving.auth.users import create_user
from serving.store import audit
from tests.serving.conftest import Client, free_port
from tests.serving.reliability.helpers import local_service
from tests.serving.reliability.holes import encode, fresh, stow_body
from tests.serving.worklist_fixtures import PASSWORD

pytestmark = pytest.mark.reliability


def _actions(services, action: str, **filters) -> list[dict]:
    return [audit.as_dict(e) for e in audit.entries(services.db, limit=500, action=action, **filters)]


@pytest.fixture
def app_client(tmp_path, ecg_registry, ecg_reader):
    from serving.local import create_local_app

    cfg = county_config(tmp_path, ecg_registry)
    throttle = cfg.auth.login_throttle.model_copy(update={"max_failures_per_account": 3, "max_failures_per_client": 6})
    cfg = cfg.model_copy(update={"auth": cfg.auth.model_copy(update={"users": [], "login_throttle": throttle})})
    app, services = create_local_app(cfg, reader=ecg_reader)
    for name, sites in (("clinic-demo", ["demo"]), ("clinic-other", ["other"]), ("reader-demo", ["demo"])):
        create_user(services.db, name, PASSWORD, "reader" if name.startswith("reader") else "grassroots", sites)
    with TestClient(app) as http:
        client = Client(http, cfg)
        client.services = services
        yield client


def _login(client, user: str, password: str):
    return client.http.post("/api/v1/login", json={"username": user, "password": password})


def test_failed_logins_lock_the_account_and_the_address(app_client):
    for _ in range(3):
        assert _login(app_client, "clinic-demo", "wrong").status_code == 401
    locked = _login(app_client, "clinic-demo", PASSWORD)  # even the right password waits
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["Retry-After"]) > 0 and "locked" in locked.text
    events = _actions(app_client.services, "login_locked", user="clinic-demo")
    assert events and events[0]["detail"]["scope"] == "account"
    # the same address trying other accounts: locked by address at 6 failures in all
    for _ in range(3):
        assert _login(app_client, "no-such-user", "guess").status_code == 401
    r = _login(app_client, "reader-demo", PASSWORD)
    assert r.status_code == 429 and _actions(app_client.services, "login_locked", user="reader-demo")
    assert _actions(app_client.services, "login_locked", user="reader-demo")[0]["detail"]["scope"] == "client"


def test_a_right_password_under_the_limit_logs_in(app_client):
    assert _login(app_client, "clinic-demo", "wrong").status_code == 401
    assert _login(app_client, "clinic-demo", PASSWORD).status_code == 200


def _waveform_into(study_uid: str | None = None) -> bytes:
    ds = fresh(pydicom.dcmread(get_testdata_file("waveform_ecg.dcm")))
    if study_uid:
        ds.StudyInstanceUID = study_uid
    return encode(ds)


def test_an_ecg_into_another_sites_study_is_refused_without_saying_whose(app_client):
    demo, other = app_client.auth(sites=("demo",)), app_client.auth(sites=("other",), user="clinic-other")
    r = app_client.http.post(
        "/api/v1/ecg", content=_waveform_into(), headers={"content-type": "application/dicom", **demo}
    )
    assert r.status_code == 201, r.text
    study_uid = r.json()["study_uid"]
    r = app_client.http.post(
        "/api/v1/ecg", content=_waveform_into(study_uid), headers={"content-type": "application/dicom", **other}
    )
    assert r.status_code == 409, r.text
    assert "demo" not in r.text and "another site" not in r.text, r.text
    (event,) = _actions(app_client.services, "security_cross_site")
    assert event["user"] == "clinic-other" and event["study_uid"] == study_uid
    assert event["detail"]["site"] == "other" and event["detail"]["owner"] == "demo"
    # the same by STOW-RS
    ct = fresh(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    ct.StudyInstanceUID = study_uid
    body, ctype = stow_body(encode(ct))
    r = app_client.http.post("/dicomweb/studies?site=other", content=body, headers={"content-type": ctype, **other})
    assert r.status_code == 409 and "demo" not in r.text, r.text
    assert len(_actions(app_client.services, "security_cross_site")) == 2
    assert app_client.services.db.get_study(study_uid).site == "demo"


def test_qido_wado_and_metadata_accesses_are_audited(app_client):
    ct = fresh(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    body, ctype = stow_body(encode(ct))
    headers = app_client.auth(sites=("demo",))
    assert (
        app_client.http.post("/dicomweb/studies", content=body, headers={"content-type": ctype, **headers}).status_code
        == 200
    )
    reader = app_client.auth(role="reader", user="reader-demo")
    study = str(ct.StudyInstanceUID)
    paths = [
        "/dicomweb/studies",
        f"/dicomweb/studies/{study}/series",
        f"/dicomweb/studies/{study}",
        f"/dicomweb/studies/{study}/metadata",
    ]
    for path in paths:
        assert app_client.http.get(path, headers=reader).status_code == 200, path
    seen = {e["detail"]["path"] for e in _actions(app_client.services, "view_dicomweb", user="reader-demo")}
    assert set(paths) <= seen, seen


@pytest.mark.parametrize("check", [True, False])
def test_a_wrong_called_ae_title_is_rejected(tmp_path, ecg_registry, ecg_reader, check):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    cfg = county_config(tmp_path, ecg_registry)
    cfg = cfg.model_copy(
        update={"dicom": cfg.dicom.model_copy(update={"enabled": True, "port": free_port(), "check_called_ae": check})}
    )
    with local_service(cfg, ecg_reader):
        ae = AE(ae_title="DEMOSITE")
        ae.add_requested_context(Verification)
        wrong = ae.associate("127.0.0.1", cfg.dicom.port, ae_title="NOTPREREAD")
        if check:
            assert wrong.is_rejected
            rejection = wrong.acceptor.primitive
            assert (rejection.result, rejection.diagnostic) == (0x01, 0x07), rejection  # permanent, called AE
        else:
            assert wrong.is_established
            wrong.release()
        right = ae.associate("127.0.0.1", cfg.dicom.port, ae_title=cfg.dicom.ae_title)
        assert right.is_established and right.send_c_echo().Status == 0
        right.release()

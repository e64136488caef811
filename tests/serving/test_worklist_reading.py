"""The reading worklist on the real API + store, on SQLite and PostgreSQL: login and revocation,
critical first, claim/release/sign with amendments and corrections, grassroots view, FHIR, exports,
atomic claims under concurrency, and a hash-chained audit trail that detects tampering."""

from __future__ import annotations

import threading

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from sqlalchemy import select, update

from serving.store import audit
from serving.store.schema import AuditEntry, Correction, Study
from tests.serving.worklist_fixtures import *  # noqa: F403
from tests.serving.worklist_fixtures import PASSWORD, ecg_json, login, post_ecg


def _critical_and_routine(client):
    clinic = login(client, "clinic-demo")
    routine = [post_ecg(client, ecg_json(bpm=72, seed=i), clinic) for i in range(2)]
    critical = post_ecg(client, ecg_json(bpm=180, seed=9), clinic)
    assert critical["level"] == "critical", critical["read"]["triage"]
    return critical, routine, clinic


def test_login_logout_revokes_the_token(reading_client):
    c = reading_client
    bad = c.http.post("/api/v1/login", json={"username": "reader-demo", "password": "wrong-password"})
    assert bad.status_code == 401
    nobody = c.http.post("/api/v1/login", json={"username": "nobody", "password": PASSWORD})
    assert nobody.status_code == 401 and nobody.json()["detail"] == bad.json()["detail"]
    headers = login(c, "reader-demo")
    me = c.http.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "reader" and me["sites"] == ["demo"]
    assert c.http.get("/api/v1/worklist", headers=headers).status_code == 200
    assert c.http.post("/api/v1/logout", headers=headers).status_code == 200
    again = c.http.get("/api/v1/worklist", headers=headers)
    assert again.status_code == 401 and "revoked" in again.text
    # tokens from `preread token` (TokenService) keep working alongside logins
    assert c.http.get("/api/v1/worklist", headers=c.auth("reader", ("demo",), "scripted")).status_code == 200
    stored = c.services.db.engine.connect().exec_driver_sql("SELECT password_hash FROM users").scalars().all()
    assert all(h.startswith("$argon2") for h in stored)


def test_critical_first_claim_sign_amend_and_grassroots_sees_report(reading_client):
    c = reading_client
    critical, routine, clinic = _critical_and_routine(c)
    reader = login(c, "reader-demo")
    items = c.http.get("/api/v1/worklist", headers=reader).json()["items"]
    assert items[0]["study_uid"] == critical["study_uid"] and items[0]["level"] == "critical"
    assert any("heart rate" in r for r in items[0]["triage_reasons"]), items[0]
    uid = critical["study_uid"]

    ecg = c.http.get(f"/api/v1/studies/{uid}/ecg", headers=reader).json()
    assert len(ecg["leads"]) == 12 and ecg["sampling_rate"] == 250 and len(ecg["leads"]["II"]) == 2500

    assert (
        c.http.post(f"/api/v1/studies/{uid}/sign", headers=reader, json={"agree": True}).status_code == 409
    )  # no claim yet
    claim = c.http.post(f"/api/v1/studies/{uid}/claim", headers=reader)
    assert claim.status_code == 200, claim.text
    listed = {i["study_uid"]: i for i in c.http.get("/api/v1/worklist", headers=reader).json()["items"]}
    assert listed[uid]["claimed_by"] == "reader-demo" and listed[uid]["status"] == "claimed"
    other = login(c, "reader-demo-2")
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=other).status_code == 409
    assert c.http.post(f"/api/v1/studies/{uid}/release", headers=other).status_code == 409

    ai_codes = [f["code"] for f in critical["read"]["findings"]]
    bad = c.http.post(f"/api/v1/studies/{uid}/sign", headers=reader, json={"agree": False, "findings": {"XYZ": True}})
    assert bad.status_code == 422
    signed = c.http.post(
        f"/api/v1/studies/{uid}/sign",
        headers=reader,
        json={"agree": False, "findings": {"STACH": True, "AF": False}, "impression": "Sinus tachycardia 180/min."},
    )
    assert signed.status_code == 200, signed.text
    report = signed.json()["report"]
    assert (
        report["status"] == "final" and report["findings"]["STACH"] is True and set(report["findings"]) == set(ai_codes)
    )
    assert uid not in {i["study_uid"] for i in c.http.get("/api/v1/worklist", headers=reader).json()["items"]}

    mine = c.http.get("/api/v1/submissions", headers=clinic).json()["items"]
    row = next(i for i in mine if i["study_uid"] == uid)
    assert row["report_status"] == "final" and row["report"]["impression"] == "Sinus tachycardia 180/min."
    assert all(i["report"] is None for i in mine if i["study_uid"] != uid)

    fhir = c.http.get(f"/fhir/DiagnosticReport?study={uid}", headers=clinic)
    assert fhir.status_code == 200 and fhir.headers["content-type"].startswith("application/fhir+json")
    resource = DiagnosticReport.model_validate(fhir.json())
    assert resource.status == "final" and resource.conclusion == "Sinus tachycardia 180/min."
    stach = next(o for o in resource.contained if o.code.coding[0].code == "STACH")
    assert stach.valueBoolean is True and stach.status == "final"
    assert any(o.code.coding and o.code.coding[0].code == "8867-4" for o in resource.contained)  # heart rate

    # amendment: claim again, sign again → amended, the correction points at the first one
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=other).status_code == 200
    amended = c.http.post(
        f"/api/v1/studies/{uid}/sign",
        headers=other,
        json={"agree": True, "findings": {}, "impression": "Agree with the AI read."},
    )
    assert amended.status_code == 200 and amended.json()["report"]["status"] == "amended"
    assert (
        DiagnosticReport.model_validate(c.http.get(f"/fhir/DiagnosticReport?study={uid}", headers=clinic).json()).status
        == "amended"
    )
    with c.services.db.session() as s:
        rows = s.scalars(select(Correction).where(Correction.study_uid == uid).order_by(Correction.id)).all()
        assert [r.signed_by for r in rows] == ["reader-demo", "reader-demo-2"]
        assert rows[1].amends == rows[0].id and rows[0].agree is False
        assert rows[0].ai_findings["findings"]["STACH"]["probability"] >= 0
    hist = c.http.get(f"/api/v1/studies/{uid}/report", headers=clinic).json()
    assert hist["report_status"] == "amended" and len(hist["history"]) == 2

    # preliminary report for an unsigned study
    pre = DiagnosticReport.model_validate(
        c.http.get(f"/fhir/DiagnosticReport?study={routine[0]['study_uid']}", headers=reader).json()
    )
    assert pre.status == "preliminary" and all(o.status == "preliminary" for o in pre.contained)


def test_release_and_claim_expiry(reading_client):
    c = reading_client
    clinic = login(c, "clinic-demo")
    uid = post_ecg(c, ecg_json(bpm=70, seed=3), clinic)["study_uid"]
    a, b = login(c, "reader-demo"), login(c, "reader-demo-2")
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=a).status_code == 200
    assert c.http.post(f"/api/v1/studies/{uid}/release", headers=a).status_code == 200
    assert c.services.db.get_study(uid).status == "ai_read"
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=b).status_code == 200
    # b's claim lapses: a may take over, and b can no longer sign
    with c.services.db.session() as s:
        s.execute(update(Study).where(Study.study_uid == uid).values(claim_expires_at=Study.claimed_at))
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=a).status_code == 200
    assert c.http.post(f"/api/v1/studies/{uid}/sign", headers=b, json={"agree": True}).status_code == 409
    assert c.http.post(f"/api/v1/studies/{uid}/sign", headers=a, json={"agree": True}).status_code == 200


def test_two_readers_claim_at_once_exactly_one_wins(reading_client):
    c = reading_client
    clinic = login(c, "clinic-demo")
    uids = [post_ecg(c, ecg_json(bpm=70, seed=20 + i), clinic)["study_uid"] for i in range(3)]
    from serving.store import claims as reading

    for uid in uids:
        barrier = threading.Barrier(4)
        results: list[str] = []

        def attempt(user: str) -> None:
            barrier.wait()  # noqa: B023
            try:
                reading.claim(c.services.db, uid, user, 20)  # noqa: B023
                results.append("won")  # noqa: B023
            except reading.ReadingError as exc:
                results.append(str(exc.status))  # noqa: B023

        threads = [threading.Thread(target=attempt, args=(f"reader-{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["409", "409", "409", "won"], results
    # and through HTTP: two readers at once, one 200, one 409
    uid = post_ecg(c, ecg_json(bpm=70, seed=40), clinic)["study_uid"]
    heads = [login(c, "reader-demo"), login(c, "reader-demo-2")]
    barrier, codes = threading.Barrier(2), []

    def http_claim(h):
        barrier.wait()
        codes.append(c.http.post(f"/api/v1/studies/{uid}/claim", headers=h).status_code)

    threads = [threading.Thread(target=http_claim, args=(h,)) for h in heads]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [200, 409]


def test_export_is_deidentified(reading_client):
    c = reading_client
    critical, _, _ = _critical_and_routine(c)
    reader = login(c, "reader-demo")
    uid = critical["study_uid"]
    c.http.post(f"/api/v1/studies/{uid}/claim", headers=reader)
    c.http.post(f"/api/v1/studies/{uid}/sign", headers=reader, json={"agree": True, "impression": "ok"})
    r = c.http.get("/api/v1/exports/signed-reads", headers=login(c, "datasci"))
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert len(rows) == 1 and rows[0]["patient_age_band"] == "65-79" and rows[0]["agree"] is True
    text = r.text
    for secret in (uid, "reader-demo", "Li", "530102", "1990"):
        assert secret not in text, f"{secret!r} leaked into the export"
    assert c.http.get(f"/api/v1/studies/{uid}", headers=login(c, "datasci")).status_code == 403


def test_audit_chain_records_actions_and_detects_tampering(reading_client):
    c = reading_client
    critical, _, _ = _critical_and_routine(c)
    reader, admin = login(c, "reader-demo"), login(c, "admin")
    uid = critical["study_uid"]
    c.http.get("/api/v1/worklist", headers=reader)
    c.http.get(f"/api/v1/studies/{uid}", headers=reader)
    c.http.post(f"/api/v1/studies/{uid}/claim", headers=reader)
    c.http.post(f"/api/v1/studies/{uid}/sign", headers=reader, json={"agree": True})
    c.http.get("/api/v1/exports/signed-reads", headers=login(c, "datasci"))
    log = c.http.get("/api/v1/audit?limit=1000", headers=admin).json()
    assert log["chain"]["ok"] is True
    actions = {(e["action"], e["user"]) for e in log["entries"]}
    assert {
        ("login", "reader-demo"),
        ("view_worklist", "reader-demo"),
        ("view_study", "reader-demo"),
        ("claim", "reader-demo"),
        ("sign", "reader-demo"),
        ("export", "datasci"),
    } <= actions
    assert all(e["client"] for e in log["entries"])
    assert c.http.get("/api/v1/audit", headers=reader).status_code == 403

    db = c.services.db
    assert audit.verify_chain(db).ok
    with db.session() as s:  # someone edits a row in the database directly
        sign_row = s.scalar(select(AuditEntry).where(AuditEntry.action == "sign"))
        s.execute(update(AuditEntry).where(AuditEntry.id == sign_row.id).values(user="someone-else"))
    check = audit.verify_chain(db)
    assert not check.ok and check.first_bad_id == sign_row.id and "edited" in check.reason
    assert c.http.get("/api/v1/audit/verify", headers=admin).json()["ok"] is False
    with db.session() as s:  # put it back: the chain is whole again; then delete a row
        s.execute(update(AuditEntry).where(AuditEntry.id == sign_row.id).values(user="reader-demo"))
    assert audit.verify_chain(db).ok
    with db.session() as s:
        s.execute(AuditEntry.__table__.delete().where(AuditEntry.id == sign_row.id - 1))
    check = audit.verify_chain(db)
    assert not check.ok and check.first_bad_id == sign_row.id and "link" in check.reason


def test_concurrent_audit_appends_keep_one_chain(reading_client):
    db = reading_client.services.db

    def burst(n: int) -> None:
        for i in range(15):
            audit.record(db, "test", user=f"u{n}", detail={"i": i})

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check = audit.verify_chain(db)
    assert check.ok and check.checked >= 60


def _append_from_another_process(url: str, n: int, tag: str) -> None:
    from serving.store.db import Database

    db = Database(url)
    for i in range(n):
        audit.record(db, "test", user=tag, detail={"i": i})
    db.engine.dispose()


def test_audit_appends_from_several_processes_keep_one_chain(reading_client):
    import multiprocessing

    db = reading_client.services.db
    url = db.engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_from_another_process, args=(url, 15, f"p{n}")) for n in range(3)]
    [p.start() for p in procs]
    [p.join(120) for p in procs]
    assert all(p.exitcode == 0 for p in procs)
    check = audit.verify_chain(db)
    assert check.ok and check.checked >= 45, check

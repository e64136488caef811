"""A reader logs in, sees the critical ECG first, opens it (12-lead drawn), corrects and signs; the
clinic that sent it then sees the final report. The same for a chest X-ray sent by STOW-RS and read by
the real tiny CXR model (dispatcher: SR + heatmap SC): image and heatmap overlay, window/level,
correction, signature, the clinic's view. Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from serving.auth.users import create_user
from tests.browser.conftest import ARTIFACTS, CXR_TEST_OPERATING_POINT, open_page, sign_in
from tests.serving.worklist_fixtures import ecg_json

pytestmark = pytest.mark.browser
PASSWORD = "browser-test-password"


def test_reader_signs_critical_ecg_and_clinic_sees_report(chromium, live_server):
    db = live_server.services.db
    create_user(db, "dr-wang", PASSWORD, "reader", ["demo"], "Dr Wang")
    create_user(db, "clinic-li", PASSWORD, "grassroots", ["demo"], "Li village clinic")
    ARTIFACTS.mkdir(exist_ok=True)

    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        token = http.post("/api/v1/login", json={"username": "clinic-li", "password": PASSWORD}).json()["token"]
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        for seed in (1, 2):
            assert (
                http.post("/api/v1/ecg", content=json.dumps(ecg_json(bpm=70, seed=seed)), headers=headers).status_code
                == 201
            )
        critical = http.post("/api/v1/ecg", content=json.dumps(ecg_json(bpm=180, seed=7)), headers=headers).json()
    assert critical["level"] == "critical"
    uid = critical["study_uid"]

    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors)
    sign_in(page, "dr-wang", PASSWORD)
    page.wait_for_selector("#worklist tbody tr")
    rows = page.locator("#worklist tbody tr")
    assert rows.count() == 3
    assert rows.first.get_attribute("data-uid") == uid and rows.first.get_attribute("data-level") == "critical"
    page.screenshot(path=str(ARTIFACTS / "01-worklist.png"), full_page=True)

    rows.first.click()
    page.wait_for_selector("#ecg[data-drawn='true']")
    assert "Preliminary AI read" in page.inner_text("#prelim-banner")
    assert "Model ecg version" in page.inner_text("#model-line")
    page.screenshot(path=str(ARTIFACTS / "02-ecg-study.png"), full_page=True)

    page.click("#claim-btn")
    page.wait_for_function("() => !document.querySelector('#sign-btn').disabled")
    # correct the read: sinus tachycardia present, no AF
    for code, value in (("STACH", True), ("AF", False)):
        box = page.locator(f"#findings input[data-code='{code}']")
        if box.is_checked() != value:
            box.click()
    page.fill("#impression", "Sinus tachycardia 180/min. Refer today.")
    page.click("#sign-btn")
    page.wait_for_selector("#final-report:not([hidden])")
    assert "final" in page.inner_text("#prelim-banner")
    page.screenshot(path=str(ARTIFACTS / "03-signed.png"), full_page=True)

    study = db.get_study(uid)
    assert study.report_status == "final" and study.signed_by == "dr-wang"
    assert study.final_report["findings"]["STACH"] is True and study.final_report["findings"]["AF"] is False

    page.click("#logout-btn")
    page.wait_for_selector("#login-form")
    sign_in(page, "clinic-li", PASSWORD)
    page.wait_for_selector(f"#submissions tbody tr[data-uid='{uid}'][data-report='final']")
    assert "Sinus tachycardia 180/min" in page.inner_text(f"#submissions tbody tr[data-uid='{uid}']")
    page.screenshot(path=str(ARTIFACTS / "04-clinic-report.png"), full_page=True)

    # the administrator sees the audit trail, chain intact, with the reader's signature in it
    create_user(db, "admin-zhou", PASSWORD, "admin", ["*"])
    page.click("#logout-btn")
    sign_in(page, "admin-zhou", PASSWORD)
    page.wait_for_selector("#audit tbody tr")
    assert "intact" in page.inner_text("#audit-chain")
    assert "sign" in page.inner_text("#audit") and "dr-wang" in page.inner_text("#audit")
    page.screenshot(path=str(ARTIFACTS / "06-admin-audit.png"), full_page=True)
    assert errors == [], errors
    page.close()


def test_reader_signs_chest_xray_with_heatmap_and_clinic_sees_report(chromium, live_server, nih_dir):
    """A township DR unit's chest X-ray (an NIH Pneumonia PNG wrapped as DX DICOM) arrives by STOW-RS, the
    dispatcher reads it with the real tiny CXR model and stores the SR and the heatmap SC; the reader opens
    it from the worklist, sees image and heatmap, toggles the overlay, re-windows, corrects and signs; the
    clinic then sees the final report."""
    from bench.county import wait_for
    from tests.serving.dicom_helpers import wrapped_nih

    svc = live_server.services
    create_user(svc.db, "dr-zhao", PASSWORD, "reader", ["demo"], "Dr Zhao")
    create_user(svc.db, "clinic-li", PASSWORD, "grassroots", ["demo"], "Li village clinic")
    ARTIFACTS.mkdir(exist_ok=True)

    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    body = wrapped_nih(png, patient_name="Li^Si")
    boundary = "b0undary"
    multipart = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body + f"\r\n--{boundary}--\r\n".encode()
    )
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        token = http.post("/api/v1/login", json={"username": "clinic-li", "password": PASSWORD}).json()["token"]
        r = http.post(
            "/dicomweb/studies",
            content=multipart,
            headers={
                "Authorization": f"Bearer {token}",
                "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
        )
    assert r.status_code == 200, r.text
    import pydicom

    uid = str(pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True).StudyInstanceUID)
    study = wait_for(
        lambda: (s := svc.db.get_study(uid)) is not None and s.status in ("ai_read", "no_ai_read", "ai_failed") and s,
        120,
        what=f"study {uid} to be read",
    )
    assert study.status == "ai_read", (study.status, study.ai_error)
    assert sorted(i.role for i in study.instances) == ["ai_sc", "ai_sr", "original"]
    # What the read says follows from its own numbers (the fixture's operating point is a test setting:
    # what this test checks is the viewer, never how well the tiny model reads): each finding is
    # positive exactly when its probability reaches the threshold the read reports, the PNEUMONIA
    # threshold is the one the fixture set, and every heatmap belongs to a finding called positive.
    findings = {f["code"]: f for f in study.ai_read["findings"]}
    assert findings["PNEUMONIA"]["threshold"] == CXR_TEST_OPERATING_POINT["PNEUMONIA"]
    for finding in findings.values():
        assert finding["positive"] == (finding["probability"] >= finding["threshold"]), finding
    positive = {code for code, f in findings.items() if f["positive"]}
    assert study.ai_read["heatmaps"], "a positive finding and no heatmap for the viewer"
    assert {h["code"] for h in study.ai_read["heatmaps"]} <= positive

    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors)
    sign_in(page, "dr-zhao", PASSWORD)
    row = page.locator(f"#worklist tbody tr[data-uid='{uid}']")
    row.wait_for()
    assert "chest film" in row.inner_text() and "AI read" in row.inner_text()
    row.click()
    loaded = "(sel) => { const i = document.querySelector(sel); return i.complete && i.naturalWidth > 0; }"
    page.wait_for_function(loaded, arg="#study-image")
    page.wait_for_function("() => !document.querySelector('#heatmap-toggle').disabled")
    page.wait_for_function(loaded, arg="#heatmap-image")
    assert page.locator("#heatmap-image").is_hidden()
    assert "Preliminary AI read" in page.inner_text("#prelim-banner")
    assert "Model cxr version" in page.inner_text("#model-line")
    # a finding the model never learned from real films is shown, and says it does not set the level
    for code, finding in findings.items():
        text = page.locator(f"#findings tr:has(input[data-code='{code}'])").inner_text()
        assert ("does not set the level" in text) == (finding["drives_level"] is False), (code, text)
    # the viewer's window/level starts at the image's own window (8-bit NIH data: 256 wide, centred at 128)
    assert page.input_value("#ww") == "256" and page.input_value("#wl") == "128"
    page.check("#heatmap-toggle")
    assert page.locator("#heatmap-image").is_visible()
    image_box = page.locator("#study-image").bounding_box()
    heat_box = page.locator("#heatmap-image").bounding_box()
    assert abs(image_box["width"] - heat_box["width"]) < 2 and abs(image_box["height"] - heat_box["height"]) < 2
    page.screenshot(path=str(ARTIFACTS / "07-cxr-heatmap.png"), full_page=True)
    page.uncheck("#heatmap-toggle")
    assert page.locator("#heatmap-image").is_hidden()
    page.check("#heatmap-toggle")

    before = page.evaluate("() => document.querySelector('#study-image').src")
    page.fill("#ww", "100")
    page.dispatch_event("#ww", "change")
    page.fill("#wl", "90")
    page.dispatch_event("#wl", "change")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#study-image'); return i.src !== old && i.complete && i.naturalWidth > 0; }",  # noqa: E501
        arg=before,
    )
    page.screenshot(path=str(ARTIFACTS / "08-cxr-windowed.png"), full_page=True)

    page.click("#claim-btn")
    page.wait_for_function("() => !document.querySelector('#sign-btn').disabled")
    # correct the read: pneumonia confirmed, with an effusion the AI did not call
    for code, value in (("PNEUMONIA", True), ("EFFUSION", True)):
        box = page.locator(f"#findings input[data-code='{code}']")
        if box.is_checked() != value:
            box.click()
    page.fill("#impression", "Right lower lobe pneumonia with small effusion. Antibiotics, review in 48 h.")
    page.click("#sign-btn")
    page.wait_for_selector("#final-report:not([hidden])")
    assert "final" in page.inner_text("#prelim-banner")
    page.wait_for_function(loaded, arg="#study-image")
    page.screenshot(path=str(ARTIFACTS / "09-cxr-signed.png"), full_page=True)

    study = svc.db.get_study(uid)
    assert study.report_status == "final" and study.signed_by == "dr-zhao"
    assert study.final_report["findings"]["PNEUMONIA"] is True and study.final_report["findings"]["EFFUSION"] is True

    page.click("#logout-btn")
    page.wait_for_selector("#login-form")
    sign_in(page, "clinic-li", PASSWORD)
    page.wait_for_selector(f"#submissions tbody tr[data-uid='{uid}'][data-report='final']")
    assert "Right lower lobe pneumonia" in page.inner_text(f"#submissions tbody tr[data-uid='{uid}']")
    page.screenshot(path=str(ARTIFACTS / "10-clinic-cxr-report.png"), full_page=True)
    assert errors == [], errors
    page.close()

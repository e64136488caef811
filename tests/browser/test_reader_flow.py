"""A reader logs in, sees the critical ECG first, opens it (12-lead drawn), corrects and signs; the
clinic that sent it then sees the final report. Screenshots go to test-artifacts/.

Covers ECGs only: chest X-ray studies are exercised by the imaging path's own tests; the page's image
viewer asks /image.png and /heatmap.png and says "not available yet" when they 404."""

from __future__ import annotations

import json

import httpx
import pytest

from serving.worklist.users import create_user
from tests.browser.conftest import ARTIFACTS
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
            assert http.post("/api/v1/ecg", content=json.dumps(ecg_json(bpm=70, seed=seed)), headers=headers).status_code == 201
        critical = http.post("/api/v1/ecg", content=json.dumps(ecg_json(bpm=180, seed=7)), headers=headers).json()
    assert critical["level"] == "critical"
    uid = critical["study_uid"]

    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.base_url + "/")
    page.fill("#username", "dr-wang")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
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
    page.fill("#username", "clinic-li")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector(f"#submissions tbody tr[data-uid='{uid}'][data-report='final']")
    assert "Sinus tachycardia 180/min" in page.inner_text(f"#submissions tbody tr[data-uid='{uid}']")
    page.screenshot(path=str(ARTIFACTS / "04-clinic-report.png"), full_page=True)

    # the administrator sees the audit trail, chain intact, with the reader's signature in it
    create_user(db, "admin-zhou", PASSWORD, "admin", ["*"])
    page.click("#logout-btn")
    page.fill("#username", "admin-zhou")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#audit tbody tr")
    assert "intact" in page.inner_text("#audit-chain")
    assert "sign" in page.inner_text("#audit") and "dr-wang" in page.inner_text("#audit")
    page.screenshot(path=str(ARTIFACTS / "06-admin-audit.png"), full_page=True)
    assert errors == [], errors
    page.close()


def test_image_study_viewer_heatmap_and_window(chromium, live_server):
    """An image study as the imaging path stores it (original + ``ai_sc`` heatmap instance): the viewer
    shows the image, toggles the heatmap overlay and re-windows. Stored directly here: the CXR ingest
    path is tested on its own."""
    import io

    import numpy as np
    from PIL import Image
    from sqlalchemy import update

    from serving.store.db import NewInstance
    from serving.store.schema import Instance

    svc = live_server.services
    create_user(svc.db, "dr-zhao", PASSWORD, "reader", ["demo"])

    def png(arr, mode):
        buffer = io.BytesIO()
        Image.fromarray(arr, mode).save(buffer, "PNG")
        return buffer.getvalue()

    yy, xx = np.mgrid[0:256, 0:256]
    chest = (128 + 100 * np.sin(xx / 20.0) * np.cos(yy / 30.0)).astype(np.uint8)
    heat = np.zeros((256, 256, 3), dtype=np.uint8)
    heat[80:160, 60:140] = (255, 40, 0)
    uid = "1.2.826.0.1.3680043.10.999.2"
    for sop, data, source in (("1.2.3.200", png(chest, "L"), "http"), ("1.2.3.201", png(heat, "RGB"), "ai")):
        obj = svc.store.put(data, ".png")
        svc.db.accept_instance(NewInstance(sop, uid, "demo", "CR", "image/png", obj.key, obj.sha256, obj.size_bytes, source))
    with svc.db.session() as s:
        s.execute(update(Instance).where(Instance.sop_instance_uid == "1.2.3.201").values(role="ai_sc"))

    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.base_url + "/")
    page.fill("#username", "dr-zhao")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    page.click(f"#worklist tbody tr[data-uid='{uid}']")
    page.wait_for_function("() => document.querySelector('#study-image').complete && document.querySelector('#study-image').naturalWidth > 0")
    assert page.locator("#heatmap-image").is_hidden()
    page.wait_for_function("() => !document.querySelector('#heatmap-toggle').disabled")
    page.check("#heatmap-toggle")
    assert page.locator("#heatmap-image").is_visible()
    page.screenshot(path=str(ARTIFACTS / "05-image-heatmap.png"), full_page=True)
    page.fill("#ww", "60")
    page.dispatch_event("#ww", "change")
    page.wait_for_timeout(500)
    assert "Preliminary AI read" in page.inner_text("#prelim-banner")
    assert errors == [], errors
    page.close()

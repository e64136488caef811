"""A data scientist logs in and sees model monitoring: agreement of the AI with the doctors' signed
reads per finding, site and period, the agreement chart, and the drift table. Screenshot in
test-artifacts/."""

from __future__ import annotations

import json

import httpx
import pytest

from serving.auth.users import create_user
from tests.browser.conftest import ARTIFACTS, open_page, sign_in
from tests.serving.worklist_fixtures import ecg_json, signed_at_one_instant

pytestmark = pytest.mark.browser
PASSWORD = "browser-test-password"


def _login(http: httpx.Client, user: str) -> dict:
    token = http.post("/api/v1/login", json={"username": user, "password": PASSWORD}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_datasci_sees_agreement_chart_and_drift(chromium, live_server):
    db = live_server.services.db
    create_user(db, "clinic-li", PASSWORD, "grassroots", ["demo"])
    create_user(db, "dr-wang", PASSWORD, "reader", ["demo"])
    create_user(db, "ds-zhao", PASSWORD, "datasci", ["demo"], "Zhao (data science)")
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        clinic, reader = _login(http, "clinic-li"), _login(http, "dr-wang")
        for seed in range(3):
            read = http.post(
                "/api/v1/ecg",
                content=json.dumps(ecg_json(bpm=72, seed=seed)),
                headers={**clinic, "content-type": "application/json"},
            ).json()
            uid = read["study_uid"]
            final = {f["code"]: f["positive"] for f in read["read"]["findings"]}
            if seed == 0:  # the doctor corrects one finding of one read
                final["STACH"] = not final["STACH"]
            assert http.post(f"/api/v1/studies/{uid}/claim", headers=reader).status_code == 200
            assert (
                http.post(
                    f"/api/v1/studies/{uid}/sign", headers=reader, json={"agree": seed != 0, "findings": final}
                ).status_code
                == 200
            )
    signed_at_one_instant(db)  # agreement and drift rows per week: one week, whatever the wall clock

    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors, height=1200)
    sign_in(page, "ds-zhao", PASSWORD)
    page.wait_for_selector("#m-summary tbody tr td:has-text('STACH')")
    assert page.locator("#worklist-view").is_hidden() and page.locator("#export-view").is_visible()
    assert "3 signed reads at demo" in page.inner_text("#m-caption")
    stach = page.locator("#m-summary tbody tr", has_text="STACH")
    assert "67%" in stach.inner_text()  # 2 of 3 reads agree on STACH
    assert page.locator("#m-drift tbody tr").count() == page.locator("#m-agreement tbody tr").count() > 0
    page.wait_for_function("() => document.querySelector('#m-chart').naturalWidth > 100")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "20-monitoring.png"), full_page=True)

    page.select_option("#m-modality", "CR")
    page.wait_for_selector("#m-summary tbody tr td:has-text('No data yet.')")
    assert "0 signed reads" in page.inner_text("#m-caption")
    assert not errors, errors

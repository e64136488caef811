"""The reading doctor's and the clinic's day in Chinese, in a headless Chromium that has NO CJK font of
its own (fontconfig limited to DejaVu, as on a fresh county PC): the page's shipped font must draw every
glyph. The zh-CN worklist and a study render with real glyphs, paging reaches study 300 of 450, a deep
link opens a study, a prior ECG is shown with its deltas, a signed report's PDF downloads and holds the
impression in Chinese. Screenshots go to test-artifacts/ (docs/reading-worklist.md shows copies)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import uuid
from datetime import timedelta

import httpx
import pytest

from serving.auth.users import create_user
from serving.store.db import NewInstance
from serving.store.schema import Study, utcnow
from tests.browser.conftest import ARTIFACTS, open_page, sign_in
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.serving.worklist_fixtures import ecg_json

pytestmark = pytest.mark.browser
PASSWORD = "browser-test-password"
IMPRESSION = "窦性心动过速，较前心率明显增快。建议复查心电图。"
DEJAVU = "/usr/share/fonts/truetype/dejavu"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Chromium whose fontconfig sees only DejaVu (no CJK glyphs at all): what a machine without a CJK
    font shows. Overrides the session's browser for this module."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    if not os.path.isdir(DEJAVU):
        pytest.skip(f"{DEJAVU} missing: cannot build a font set without CJK")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    folder = tmp_path_factory.mktemp("fontconfig")
    (folder / "fonts.conf").write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
        f"<fontconfig><dir>{DEJAVU}</dir><cachedir>{folder / 'cache'}</cachedir></fontconfig>"
    )
    env = dict(os.environ, FONTCONFIG_FILE=str(folder / "fonts.conf"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, env=env)
        yield browser
        browser.close()


def platform_fonts(page, selector: str) -> list[dict]:
    """The fonts Chromium actually used to draw the text of ``selector`` (its own text nodes, not its
    children's; DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]


def assert_real_glyphs(page, selector: str) -> None:
    """Every glyph of the element comes from the shipped font (no fallback to a font without CJK)."""
    fonts = platform_fonts(page, selector)
    assert fonts and all(f["isCustomFont"] and "CJK" in f["familyName"] for f in fonts), (selector, fonts)


GLYPH_PROBE = """(family) => {
  const draw = (ch) => { const c = document.createElement('canvas'); c.width = 64; c.height = 64;
    const x = c.getContext('2d'); x.font = '48px ' + family; x.fillText(ch, 4, 52); return c.toDataURL(); };
  const span = document.createElement('span'); span.style.font = '32px ' + family; span.textContent = '窦性心律';
  document.body.append(span); const width = span.getBoundingClientRect().width; span.remove();
  return { distinct: draw('窦') !== draw('性'), width };
}"""


def post_ecgs(http, token: str, bodies: list[dict]) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    out = []
    for body in bodies:
        r = http.post("/api/v1/ecg", content=json.dumps(body), headers=headers)
        assert r.status_code in (200, 201), r.text
        out.append(r.json())
    return out


def same_patient(body: dict) -> dict:
    body["patient"] = {"id": "520102195803150017", "issuer": "GZ-HIS", "name": "张^三", "sex": "M", "age": "067Y"}
    return body


def test_zh_worklist_and_ecg_with_prior_render_with_real_glyphs(chromium, live_server):
    db = live_server.services.db
    create_user(db, "dr-wang", PASSWORD, "reader", ["demo"], "王医生")
    create_user(db, "clinic-li", PASSWORD, "grassroots", ["demo"], "李村卫生室")
    ARTIFACTS.mkdir(exist_ok=True)
    with httpx.Client(base_url=live_server.base_url, timeout=120) as http:
        token = http.post("/api/v1/login", json={"username": "clinic-li", "password": PASSWORD}).json()["token"]
        prior, current = post_ecgs(
            http, token, [same_patient(ecg_json(bpm=68, seed=3)), same_patient(ecg_json(bpm=125, seed=4))]
        )
        post_ecgs(http, token, [ecg_json(bpm=75, seed=5)])  # another patient: no prior
    read = current["read"]
    assert read["prior"] and read["prior"]["study_uid"] == prior["study_uid"], read.get("prior")
    assert read["prior"]["deltas"]["heart_rate_bpm"] > 40

    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors, locale=None)  # the deployment default: zh-CN
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "dr-wang", PASSWORD)
    page.wait_for_selector("#worklist tbody tr")
    page.evaluate("document.fonts.ready")
    assert page.inner_text("#worklist-view h2") == "阅片工作列表"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    row = f"#worklist tbody tr[data-uid='{current['study_uid']}']"
    for selector in ("#worklist-view h2", "#worklist thead th:nth-child(2)", f"{row} td.patient", f"{row} span.level"):
        assert_real_glyphs(page, selector)
    assert "张*" in page.inner_text(row)  # masked per config
    shipped, system = page.evaluate(GLYPH_PROBE, "PrereadCJK"), page.evaluate(GLYPH_PROBE, "'DejaVu Sans'")
    assert shipped["distinct"] and not system["distinct"], "the probe must tell boxes from glyphs"
    assert abs(shipped["width"] - system["width"]) > 5, (shipped, system)
    # columns fit a 1366 px screen: no horizontal scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(ARTIFACTS / "zh-01-worklist.png"))

    page.click(f"#worklist tbody tr[data-uid='{current['study_uid']}']")
    page.wait_for_selector("#ecg[data-drawn='true']")
    page.wait_for_selector("#ecg-prior[data-drawn='true']")
    assert "与" in page.inner_text("#prior-sentence") and "心电图比较" in page.inner_text("#prior-sentence")
    delta = page.inner_text("#measurements td.delta[data-key='heart_rate_bpm']")
    assert re.fullmatch(r"\+\d+", delta), delta
    # the stated screen scale is the drawn one (the view opens at the zoom step that fits); "true size" is 96/25.4
    px_per_mm = float(page.get_attribute("#ecg", "data-px-per-mm"))
    assert f"{px_per_mm:.2f}" in page.inner_text("#ecg-scale")
    css_width = page.evaluate("parseFloat(document.querySelector('#ecg').style.width)")
    assert css_width == pytest.approx(263 * px_per_mm, abs=1)  # 5 mm pulse + 250 mm + 2 × 4 mm margin
    page.click("#ecg-zoom-reset")
    page.wait_for_function("() => Math.abs(document.querySelector('#ecg').dataset.pxPerMm - 96 / 25.4) < 1e-6")
    assert_real_glyphs(page, "#prelim-banner")
    assert_real_glyphs(page, "#prior-sentence")
    page.screenshot(path=str(ARTIFACTS / "zh-02-ecg-with-prior.png"), full_page=True)

    # the other patient's ECG says there is no prior
    page.keyboard.press("Escape")
    page.wait_for_selector("#worklist-view:not([hidden])")
    other = [
        r
        for r in page.locator("#worklist tbody tr").all()
        if r.get_attribute("data-uid") not in (current["study_uid"], prior["study_uid"])
    ][0]
    other.click()
    page.wait_for_selector("#no-prior")
    assert page.inner_text("#no-prior") == "该患者无同类既往检查。"
    assert errors == [], errors
    page.close()


def seed_studies(db, n: int) -> list[str]:
    """``n`` open ECG studies with AI levels and scores, straight into the store (no model reads)."""
    uids = []
    levels = ["critical", "urgent", "routine"]
    for i in range(n):
        uid = f"2.25.{uuid.uuid4().int}"
        study, _, _ = db.accept_instance(
            NewInstance(
                sop_instance_uid=f"{uid}.1",
                study_uid=uid,
                site="demo",
                modality="ECG",
                content_type="application/json",
                storage_key=f"seed/{i}",
                sha256="0" * 64,
                size_bytes=1,
                source="test",
                patient_name=f"Patient^{i:03d}",
            )
        )
        uids.append(uid)
    with db.session() as session:
        for i, uid in enumerate(uids):
            row = session.query(Study).filter(Study.study_uid == uid).one()
            row.status, row.level, row.score = "ai_read", levels[i % 3], round(0.1 + (i % 90) / 100, 2)
            row.arrived_at = utcnow() - timedelta(seconds=i)
    return uids


def test_paging_deep_link_filters_and_keys(chromium, live_server):
    db = live_server.services.db
    create_user(db, "dr-zhao", PASSWORD, "reader", ["demo"], "赵医生")
    seed_studies(db, 450)
    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors, locale=None)
    sign_in(page, "dr-zhao", PASSWORD)
    page.wait_for_selector("#worklist tbody tr")
    assert page.inner_text("#page-range") == "第 1–50 条，共 450 条"
    for _ in range(5):
        previous = page.inner_text("#page-range")
        page.click("#page-next")
        page.wait_for_function("(old) => document.querySelector('#page-range').textContent !== old", arg=previous)
    assert page.inner_text("#page-range") == "第 251–300 条，共 450 条"
    last = page.locator("#worklist tbody tr").last
    assert last.get_attribute("data-index") == "300"
    token = page.evaluate("sessionStorage.getItem('preread.token')")
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        expected = http.get(
            "/api/v1/worklist", params={"offset": 299, "limit": 1}, headers={"Authorization": f"Bearer {token}"}
        ).json()
    assert expected["total"] == 450 and expected["items"][0]["study_uid"] == last.get_attribute("data-uid")
    assert "page=6" in page.url
    # score, level and reason agree on every row
    for row in page.locator("#worklist tbody tr").all()[:10]:
        score = row.locator("td.num").nth(1).inner_text()
        assert f"评分 {score}" in row.inner_text()

    # a filter lives in the URL: a reload keeps it
    page.select_option("#f-level", "critical")
    page.wait_for_function("() => location.hash.includes('level=critical')")
    page.reload()
    page.wait_for_function("() => document.querySelector('#f-level').value === 'critical'")
    page.wait_for_function("() => document.querySelector('#page-range').textContent.includes('共 150 条')")

    # keys: j j Enter opens the third row; Escape goes back; a deep link opens a study
    for _ in range(3):
        page.keyboard.press("j")
    third = page.locator("#worklist tbody tr.selected").get_attribute("data-uid")
    assert third == page.locator("#worklist tbody tr").nth(2).get_attribute("data-uid")
    page.keyboard.press("Enter")
    page.wait_for_function("(uid) => location.hash === '#/study/' + encodeURIComponent(uid)", arg=third)
    page.wait_for_selector("#study-view:not([hidden])")
    page.keyboard.press("Escape")
    page.wait_for_function("() => location.hash.includes('level=critical')")
    target = expected["items"][0]["study_uid"]
    page.goto(f"{live_server.base_url}/#/study/{target}")
    page.wait_for_selector("#study-view:not([hidden])")
    page.wait_for_function("(uid) => document.querySelector('#study-head').textContent.includes(uid)", arg=target)
    assert errors == [], errors
    page.close()


def test_signed_report_pdf_downloads_with_the_chinese_impression(chromium, live_server, tmp_path):
    db = live_server.services.db
    create_user(db, "dr-sun", PASSWORD, "reader", ["demo"], "孙医生")
    create_user(db, "clinic-wu", PASSWORD, "grassroots", ["demo"], "吴村卫生室")
    with httpx.Client(base_url=live_server.base_url, timeout=120) as http:
        token = http.post("/api/v1/login", json={"username": "clinic-wu", "password": PASSWORD}).json()["token"]
        (study,) = post_ecgs(http, token, [same_patient(ecg_json(bpm=130, seed=9))])
        early = http.get(
            f"/api/v1/studies/{study['study_uid']}/report.pdf", headers={"Authorization": f"Bearer {token}"}
        )
    assert early.status_code == 409 and "signed" in early.json()["detail"]
    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors, locale=None)
    sign_in(page, "dr-sun", PASSWORD)
    page.goto(f"{live_server.base_url}/#/study/{study['study_uid']}")
    page.wait_for_selector("#ecg[data-drawn='true']")
    page.keyboard.press("c")
    page.wait_for_function("() => !document.querySelector('#sign-btn').disabled")
    page.fill("#impression", IMPRESSION)
    page.click("#sign-btn")
    page.wait_for_selector("#pdf-link")
    with page.expect_download() as download:
        page.click("#pdf-link")
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) missing: scripts/install-peers.sh installs it")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    text = re.sub(r"\s+", "", text)
    assert re.sub(r"\s+", "", IMPRESSION) in text
    assert "AI初步预读已由孙医生审核" in text and "十二导联心电图报告" in text
    subprocess.run(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-r",
            "70",
            "-png",
            "-singlefile",
            str(pdf),
            str(ARTIFACTS / "zh-04-report-pdf-page1"),
        ],
        check=True,
    )
    reader_token = page.evaluate("sessionStorage.getItem('preread.token')")
    fhir = httpx.get(
        f"{live_server.base_url}/fhir/DiagnosticReport",
        params={"study": study["study_uid"]},
        headers={"Authorization": f"Bearer {reader_token}"},
    ).json()
    assert fhir["status"] == "final" and fhir["presentedForm"][0]["contentType"] == "application/pdf"
    assert fhir["conclusion"] == IMPRESSION
    assert errors == [], errors
    page.close()


def test_chest_film_with_its_prior_side_by_side(chromium, live_server, nih_dir):
    """Two films of one patient (same patient ID, the site's register) arrive by STOW-RS and are read by
    the real tiny CXR model; the later one names the earlier as its prior, and the page shows both films
    with one zoom and window."""
    import pydicom

    from bench.county import wait_for
    from tests.serving.dicom_helpers import wrapped_nih

    svc = live_server.services
    create_user(svc.db, "dr-qian", PASSWORD, "reader", ["demo"], "钱医生")
    create_user(svc.db, "clinic-he", PASSWORD, "grassroots", ["demo"], "何村卫生室")
    films = sorted((nih_dir / "Pneumonia").glob("*.png"))[:2]
    uids = []
    with httpx.Client(base_url=live_server.base_url, timeout=120) as http:
        token = http.post("/api/v1/login", json={"username": "clinic-he", "password": PASSWORD}).json()["token"]
        for png in films:
            body = wrapped_nih(png, patient_id="GZ-000777", patient_name="Li^Si", patient_sex="M")
            boundary = "b0undary"
            multipart = (
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + body
                + f"\r\n--{boundary}--\r\n".encode()
            )
            r = http.post(
                "/dicomweb/studies",
                content=multipart,
                headers={
                    "Authorization": f"Bearer {token}",
                    "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                },
            )
            assert r.status_code == 200, r.text
            uid = str(pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True).StudyInstanceUID)
            wait_for(
                lambda u=uid: (s := svc.db.get_study(u)) is not None and s.status == "ai_read" and s,
                180,
                what=f"study {uid} to be read",
            )
            uids.append(uid)
    later = svc.db.get_study(uids[1])
    assert later.ai_read["prior"] and later.ai_read["prior"]["study_uid"] == uids[0]
    assert svc.db.get_study(uids[0]).ai_read["prior"] is None  # the first film has none, and says so

    errors: list[str] = []
    page = open_page(chromium, live_server.base_url, errors, locale=None)
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "dr-qian", PASSWORD)
    page.wait_for_selector("#worklist tbody tr")
    page.goto(f"{live_server.base_url}/#/study/{uids[1]}")
    page.wait_for_selector("#study-image[data-loaded='true']")
    page.wait_for_selector("#prior-frame:not([hidden])")
    page.wait_for_function(
        "() => { const i = document.querySelector('#prior-image'); return i.complete && i.naturalWidth > 0; }"
    )
    assert "既往胸片" in page.inner_text("#prior-caption")
    assert "胸片比较" in page.inner_text("#prior-sentence")
    page.click("#img-zoom-in")
    transforms = page.evaluate("[...document.querySelectorAll('.image-stack')].map((s) => s.style.transform)")
    assert len(set(transforms)) == 1 and "scale(1.25)" in transforms[0]
    page.screenshot(path=str(ARTIFACTS / "zh-03-xray-with-prior.png"))
    assert errors == [], errors
    page.close()

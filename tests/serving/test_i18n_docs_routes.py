"""The page's catalog route and the offline API documentation (no CDN), on a bare app with only those
routers (no services: the login page needs its words while the replica starts)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api.routes import docs, i18n


def client() -> TestClient:
    app = FastAPI(docs_url=None, redoc_url=None)
    app.state.get_services = lambda: None
    app.include_router(i18n.router)
    app.include_router(docs.router)
    return TestClient(app)


def test_catalog_defaults_to_chinese_and_switches_to_english():
    http = client()
    zh = http.get("/api/v1/i18n").json()
    assert zh["locale"] == zh["default_locale"] == "zh-CN"
    assert zh["catalog"]["ui"]["worklist.title"] == "阅片工作列表"
    assert zh["catalog"]["level"]["critical"] == "危急"
    assert {loc["tag"]: loc["name"] for loc in zh["locales"]} == {"zh-CN": "中文（简体）", "en": "English"}
    en = http.get("/api/v1/i18n", params={"locale": "en-US"}).json()
    assert en["locale"] == "en" and en["catalog"]["ui"]["worklist.title"] == "Reading worklist"
    assert http.get("/api/v1/i18n", params={"locale": "fr"}).status_code == 404


def test_docs_and_redoc_use_only_assets_the_service_serves():
    http = client()
    for path, asset in (("/docs", "/static/docs/swagger-ui-bundle.js"), ("/redoc", "/static/docs/redoc.standalone.js")):
        page = http.get(path)
        assert page.status_code == 200 and asset in page.text
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text, path
        script = http.get(asset)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert len(script.content) > 100_000
    assert http.get("/static/docs/../../etc/passwd").status_code == 404

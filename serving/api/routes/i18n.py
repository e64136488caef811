"""The page's words: the message catalog of a locale as JSON (the page holds no strings of its own).

No authentication: the login page needs its words before anyone signs in, and a catalog holds no
patient data. The deployment names the default locale (``locale`` in the serving config, zh-CN in the
demo); ``?locale=`` asks for another one (the user's switch on the page).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from datasets.vocabulary import i18n

router = APIRouter(tags=["i18n"])


class LocaleOut(BaseModel):
    tag: str  # BCP 47 (zh-CN, en)
    name: str  # the locale's own name for itself (中文（简体）, English)


class CatalogOut(BaseModel):
    locale: str
    default_locale: str
    locales: list[LocaleOut]
    catalog: dict[str, dict[str, str]]


def deployment_locale(request: Request) -> str:
    """The serving config's locale; the catalog default while the replica's services are starting."""
    svc = request.app.state.get_services()
    return i18n.normalize_locale(svc.config.locale if svc is not None else None)


@router.get("/api/v1/i18n", response_model=CatalogOut)
def catalog(
    request: Request,
    locale: str | None = Query(None, description="BCP 47 tag, e.g. zh-CN or en; default: the deployment's"),
) -> JSONResponse:
    default = deployment_locale(request)
    try:
        chosen = i18n.normalize_locale(locale) if locale else default
    except i18n.UnknownLocale as exc:
        raise HTTPException(404, str(exc)) from exc
    body = CatalogOut(
        locale=i18n.bcp47(chosen),
        default_locale=i18n.bcp47(default),
        locales=[
            LocaleOut(tag=i18n.bcp47(code), name=i18n.translate(code, "ui", "locale.self"))
            for code in i18n.SUPPORTED_LOCALES
        ],
        catalog=i18n.catalog(chosen),
    )
    # cached briefly by the browser: the catalog changes only with a deployment
    return JSONResponse(body.model_dump(), headers={"cache-control": "max-age=300"})

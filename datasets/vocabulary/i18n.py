"""Message catalogs: the words a person reads, per locale, keyed by stable codes.

A leaf: it imports nothing of ours, so the page, the reports (SR text values, FHIR conclusion, the
printed PDF) and the pre-readers all take their words from here. Codes never change with the locale;
only the text does.

The catalogs are gettext ``.po`` files under ``locales/<locale>/LC_MESSAGES/preread.po``: ``msgctxt``
names the kind of text (``ui``, ``level``, ``finding.ECG``, ``finding.CXR``, ``statement``,
``quality``, ``measurement``, ``unit``, ``triage``, ``report``, ``disclaimer``), ``msgid`` is the stable
key (a finding code, a quality reason code, a page string's key) and ``msgstr`` the text, with
``{placeholders}`` filled in by :func:`translate`.

They are read at run time with Babel, not compiled to ``.mo``: the ``.po`` is the one reviewed source
(a compiled copy committed beside it could drift from it, and a build step would be one more thing a
fresh clone must run), and a few hundred entries parse in milliseconds, once per process.

A key a catalog lacks never raises: the locale's entry, else the English catalog's, else the
caller's ``default`` (the code's English name from its vocabulary), else the key itself. So a code
added by a new feature shows in English until it is translated.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "preread"
DEFAULT_LOCALE = "zh_CN"
"""The locale of a deployment that names none (the clinics and county readers read Chinese)."""
FALLBACK_LOCALE = "en"
"""Where a missing translation comes from."""
SUPPORTED_LOCALES: tuple[str, ...] = ("zh_CN", "en")

# BCP 47 tags (what a browser and a config say) for each catalog locale, and the DICOM Specific
# Character Set that can carry its text.
BCP47 = {"zh_CN": "zh-CN", "en": "en"}
DICOM_CHARSET = {"zh_CN": "ISO_IR 192", "en": "ISO_IR 192"}


class UnknownLocale(ValueError):
    """A locale for which no catalog exists."""


def normalize_locale(tag: str | None) -> str:
    """``zh-CN``, ``zh_cn``, ``zh-Hans-CN``, ``zh`` → ``zh_CN``; ``en-US`` → ``en``; None → the default.
    Raises UnknownLocale for a locale with no catalog (a config typo must fail loudly)."""
    if not tag:
        return DEFAULT_LOCALE
    parts = tag.replace("_", "-").split("-")
    language = parts[0].lower()
    for locale in SUPPORTED_LOCALES:
        if locale.split("_")[0] == language:
            return locale
    raise UnknownLocale(f"no catalog for locale {tag!r}; known: {', '.join(BCP47.values())}")


def bcp47(locale: str | None) -> str:
    """The BCP 47 tag of a locale (``zh_CN`` → ``zh-CN``), for HTML ``lang`` and FHIR ``language``."""
    return BCP47[normalize_locale(locale)]


@cache
def _entries(locale: str) -> dict[tuple[str, str], str]:
    """(context, key) → text of one catalog. Empty and fuzzy entries count as missing."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with open(path, "rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    return {
        (message.context or "", str(message.id)): str(message.string)
        for message in catalog
        if message.id and message.string and not message.fuzzy
    }


class _KeepMissing(dict[str, Any]):
    """Leaves ``{name}`` in place for a placeholder the caller did not fill, instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(text: str, params: dict[str, Any]) -> str:
    if not params or "{" not in text:
        return text
    try:
        return string.Formatter().vformat(text, (), _KeepMissing(params))
    except (ValueError, IndexError, AttributeError):  # a malformed catalog entry shows as written
        return text


def lookup(locale: str | None, context: str, key: str) -> str | None:
    """The locale's own text for a key, or None when that catalog lacks it (no fallback)."""
    return _entries(normalize_locale(locale)).get((context, key))


def translate(locale: str | None, context: str, key: str, default: str | None = None, **params: Any) -> str:
    """The text of ``key`` in ``context`` for ``locale``, placeholders filled from ``params``. Falls back
    to the English catalog, then ``default``, then the key: never raises for a missing entry."""
    try:
        own = lookup(locale, context, key)
    except UnknownLocale:
        own = None
    text = own or _entries(FALLBACK_LOCALE).get((context, key)) or default or key
    return _fill(text, params)


def level_name(locale: str | None, level: str) -> str:
    """危急 / 紧急 / 常规 for critical / urgent / routine."""
    return translate(locale, "level", str(level))


def finding_name(locale: str | None, modality: str, code: str, default: str | None = None) -> str:
    """A model finding's name (``modality`` ECG or CXR: the same code can mean different things)."""
    return translate(locale, f"finding.{modality}", code, default)


def statement_name(locale: str | None, code: str, default: str | None = None) -> str:
    """An ECG statement's name (窦性心动过速 for STACH)."""
    return translate(locale, "statement", code, default)


def quality_text(
    locale: str | None, code: str, leads: list[str] | tuple[str, ...] = (), default: str | None = None
) -> str:
    """What to do about a failed quality check (请重做心电图：V1–V3导联噪声大)."""
    return translate(locale, "quality", str(code), default, leads=_lead_list(leads, locale))


def triage_reason(locale: str | None, reason: str) -> str:
    """A triage rule's reason (configs/triage/*.yaml writes it in English; the catalog is keyed by it)."""
    return translate(locale, "triage", reason, reason)


def measurement_name(locale: str | None, key: str) -> str:
    return translate(locale, "measurement", key, key.replace("_", " "))


def measurement_unit(locale: str | None, key: str) -> str:
    return translate(locale, "unit", key, "")


def _lead_list(leads: list[str] | tuple[str, ...], locale: str | None) -> str:
    """V1, V2, V3 → V1–V3 (a run of consecutive precordial leads); others joined by the locale's
    list separator (、 in Chinese)."""
    leads = list(leads)
    try:
        separator = "、" if normalize_locale(locale) == "zh_CN" else ", "
    except UnknownLocale:
        separator = ", "
    precordial = [lead for lead in leads if lead.startswith("V") and lead[1:].isdigit()]
    numbers = sorted(int(lead[1:]) for lead in precordial)
    if len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        others = [lead for lead in leads if lead not in precordial]
        return separator.join(others + [f"V{numbers[0]}–V{numbers[-1]}"])
    return separator.join(leads)


def catalog(locale: str | None, contexts: tuple[str, ...] | None = None) -> dict[str, dict[str, str]]:
    """The whole catalog for a page: {context: {key: text}}, English filling the locale's gaps."""
    own = _entries(normalize_locale(locale))
    merged: dict[str, dict[str, str]] = {}
    for (context, key), text in {**_entries(FALLBACK_LOCALE), **own}.items():
        if contexts is None or context in contexts:
            merged.setdefault(context, {})[key] = text
    return merged


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a catalog text uses (a test checks every locale uses the English entry's)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def keys(locale: str) -> set[tuple[str, str]]:
    """Every (context, key) a locale's catalog holds."""
    return set(_entries(normalize_locale(locale)))

"""Log redaction: secrets never reach a log, and patient names and ids are masked in every record.

Installed as a LogRecord factory (``install``), so it sees every record of every logger in the
process — ours, uvicorn's, pynetdicom's, SQLAlchemy's, Ray Serve's — before any handler formats
it, including the text of an exception a record carries. What it removes:

- access tokens (JWTs), ``Bearer …`` credentials, ``password=``/``secret=``/``token=`` values,
  passwords in URLs (``postgresql://user:***@host``);
- the values registered as secrets (the token signing key, the database password);
- patient names and ids: DICOM person names (``Family^Given``), the Patient's Name / Patient ID
  elements in dataset dumps, ``patient_name=…``-style fields, and the exact names and ids this
  process has seen at ingest (``remember_patient``), in whatever form they appear.

The code logs study UIDs, not patients; this is the safety net for what libraries and exception
messages carry (an SQL error's parameters, a dataset dump in a DIMSE debug log).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Iterable

from serving.privacy import mask_id, mask_name

_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)([^@\s]+)(@)")
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|secret_key|token|access_token|api[_-]?key|authorization)"
    r"(['\"]?\s*[:=]\s*['\"]?)([^\s'\",;}&]+)"
)
# pydicom's dataset dump: (0010,0010) Patient's Name   PN: 'Zhang^San'  (also Other Patient IDs/Names, birth name)
_DICOM_PATIENT = re.compile(r"(\(0010,\s?(?:0010|0020|1000|1001|1005|1060)\)[^:\n]*:\s*)([^\n]+)")
_FIELD_PATIENT = re.compile(
    r"(?i)\b(patient[_' ]?s?[_ ]?name|patientname|patient[_ ]?id|patientid)(['\"]?\s*[:=]\s*['\"]?)([^'\",}\n]+)"
)
_PERSON_NAME = re.compile(r"\b([A-Z][A-Za-z'-]+)\^([A-Za-z'-]+)(?:\^[A-Za-z'-]*)*")

REDACTED = "[redacted]"
_MAX_PATIENTS = 4096


class Redactor:
    def __init__(self):
        self._secrets: set[str] = set()
        self._patients: OrderedDict[str, str] = OrderedDict()  # value seen at ingest → its masked form
        self._lock = threading.Lock()

    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 6:
            with self._lock:
                self._secrets.add(value)

    def remember_patient(self, name: str | None = None, patient_id: str | None = None) -> None:
        """A name or id seen at ingest: masked wherever it shows up in a later record."""
        with self._lock:
            for value, masked in ((name, mask_name), (patient_id, mask_id)):
                text = str(value).strip() if value else ""
                if len(text) < 3:
                    continue
                forms = {text, text.replace("^", " "), text.replace("^", ", ")} if masked is mask_name else {text}
                for form in forms:
                    self._patients[form] = masked(form)
                    self._patients.move_to_end(form)
            while len(self._patients) > _MAX_PATIENTS:
                self._patients.popitem(last=False)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            secrets, patients = list(self._secrets), list(self._patients.items())
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for value, masked in sorted(patients, key=lambda item: -len(item[0])):
            if value in text:
                text = text.replace(value, masked)
        text = _TOKEN.sub("[token]", text)
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + "***" + m.group(3), text)
        text = _KEY_VALUE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _DICOM_PATIENT.sub(lambda m: m.group(1) + _mask_value(m.group(2)), text)
        text = _FIELD_PATIENT.sub(lambda m: m.group(1) + m.group(2) + _mask_value(m.group(3)), text)
        return _PERSON_NAME.sub(lambda m: mask_name(m.group(0)) or "", text)


def _mask_value(value: str) -> str:
    raw = value.strip().strip("'\"[]")
    if not raw or set(raw) <= {"*", " "}:
        return value
    return mask_id(raw) if any(ch.isdigit() for ch in raw) else (mask_name(raw) or "")


redact = Redactor()
_installed = False
_install_lock = threading.Lock()


def _redacting_factory(previous):
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            _scrub(record)
        except Exception:  # noqa: BLE001 - a log call must never fail because of redaction
            record.msg, record.args = "[log record withheld: redaction failed]", ()
        return record

    factory.preread_redacting = True
    return factory


def _scrub(record: logging.LogRecord) -> None:
    message = record.getMessage()
    clean = redact(message)
    if clean != message:
        # Keep the record's structure where formatters depend on it (uvicorn's access log reads
        # args); fall back to the redacted text when a secret spans the template and its args.
        if isinstance(record.args, tuple) and record.args:
            args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            template = redact(str(record.msg))
            try:
                if template % args == clean:
                    record.msg, record.args = template, args
                else:
                    record.msg, record.args = clean, ()
            except (TypeError, ValueError):
                record.msg, record.args = clean, ()
        else:
            record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install(secrets: Iterable[str | None] = ()) -> None:
    """Redact every log record created in this process from now on (idempotent); ``secrets`` are
    exact values never to be logged (added to those already registered)."""
    global _installed
    for secret in secrets:
        redact.add_secret(secret)
    with _install_lock:
        current = logging.getLogRecordFactory()
        if _installed and getattr(current, "preread_redacting", False):
            return
        logging.setLogRecordFactory(_redacting_factory(current))
        _installed = True


def database_password(url: str) -> str | None:
    """The password in a database URL, to register as a secret."""
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - logs load before anything heavy

        return make_url(url).password
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse has no password to hide
        return None

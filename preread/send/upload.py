"""Sending one queued item to the county service and saying what happened.

STOW-RS for DICOM (one instance per request: a study of several images goes in parts, and a part
that went through is never sent again), `POST /api/v1/ecg` for ECG files. What the answer means:
- 2xx: stored (a duplicate after a lost acknowledgement answers 200 too): done.
- 400, 409, 413, 415, 422: the service will never take it: stop, keep the reason.
- 401 (token expired or wrong) and 403 (token not for this site): kept and retried, with an alert,
  since the fix is on our side and the study must not be lost meanwhile.
- 429 / 5xx / a network error / a timeout: kept and retried with backoff (Retry-After when given).
"""

from __future__ import annotations

import json
import random
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from preread.send.config import SendConfig
from preread.send.parcel import Kind
from preread.send.queue import Item
from preread.send.wire import TokenBucket, WireBody, prepare

NEVER = {400, 409, 413, 415, 422}
TOKEN_PROBLEM = {401, 403}


class Verdict(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    REFUSED = "refused"
    TOKEN = "token"  # retry, and alert: the clinic must fix its token


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    study_uid: str | None = None
    read: dict[str, Any] | None = None  # an ECG's read comes back in the answer itself
    reason: str = ""
    retry_after_s: float | None = None
    wire_bytes: int = 0


def backoff_s(attempts: int, initial_s: float, max_s: float, rng: random.Random = random) -> float:
    """Exponential backoff with jitter: a random wait in [½, 1] × min(max, initial × 2^attempts), so
    many clinics coming back after an outage do not all retry in the same second."""
    ceiling = min(max_s, initial_s * (2 ** min(attempts, 30)))
    return ceiling * (0.5 + 0.5 * rng.random())


def http_client(cfg: SendConfig, timeout_s: float | None = None) -> httpx.Client:
    """HTTPS verifying the server's certificate against ca_file (or the system's trust store)."""
    verify: ssl.SSLContext | bool = True
    if cfg.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(cfg.ca_file))
    timeout = httpx.Timeout(timeout_s or cfg.retry.request_timeout_s, connect=min(30.0, timeout_s or 30.0))
    return httpx.Client(
        base_url=cfg.server_url,
        verify=verify,
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": "preread-send/0.1"},
    )


class Uploader:
    def __init__(self, cfg: SendConfig, client: httpx.Client, bucket: TokenBucket):
        self.cfg, self.client, self.bucket = cfg, client, bucket
        self.server_encodings: frozenset[str] = frozenset()

    def learn_encodings(self, response: httpx.Response) -> None:
        """RFC 7694: the content codings the service accepts in requests, from any of its answers."""
        header = response.headers.get("accept-encoding", "")
        self.server_encodings = frozenset(p.split(";")[0].strip().lower() for p in header.split(",") if p.strip())

    def send(self, item: Item, data: bytes) -> Outcome:
        body = prepare(item.kind, data, self.cfg.compression == "auto", self.server_encodings)
        sent = [0]
        path = "/dicomweb/studies" if item.kind is Kind.DICOM else "/api/v1/ecg"
        params = {"site": self.cfg.site} if self.cfg.site else None
        headers = {
            "Authorization": f"Bearer {self.cfg.token()}",
            "Content-Type": body.content_type,
            "Content-Length": str(len(body.content)),
            **body.headers,
        }
        try:
            response = self.client.post(
                path, params=params, headers=headers, content=self.bucket.stream(body.content, sent)
            )
        except httpx.HTTPError as exc:
            return Outcome(
                Verdict.RETRY, reason=f"network: {type(exc).__name__}: {exc}".strip(": "), wire_bytes=sent[0]
            )
        if "accept-encoding" in response.headers:
            self.learn_encodings(response)
        return self._judge(item, body, response, sent[0])

    def _judge(self, item: Item, body: WireBody, response: httpx.Response, wire: int) -> Outcome:
        status = response.status_code
        if status in (200, 201) and item.kind is not Kind.DICOM:
            answer = _json(response)
            study_uid = answer.get("study_uid")
            if not study_uid:
                return Outcome(Verdict.RETRY, reason=f"HTTP {status} without a study_uid", wire_bytes=wire)
            return Outcome(Verdict.SENT, study_uid=study_uid, read=answer.get("read"), wire_bytes=wire)
        if status == 200 and item.kind is Kind.DICOM:
            return Outcome(Verdict.SENT, study_uid=item.study_uid, wire_bytes=wire)
        if status == 202:  # one instance per request: "some stored" means it failed
            return Outcome(
                Verdict.REFUSED, reason=_stow_failure(response) or "HTTP 202: instance not stored", wire_bytes=wire
            )
        if status in NEVER:
            reason = (_stow_failure(response) if item.kind is Kind.DICOM else None) or _detail(response)
            return Outcome(Verdict.REFUSED, reason=f"HTTP {status}: {reason}", wire_bytes=wire)
        if status in TOKEN_PROBLEM:
            what = (
                "token rejected (expired or wrong: get a new one)"
                if status == 401
                else "token not allowed to send for this site"
            )
            return Outcome(Verdict.TOKEN, reason=f"HTTP {status}: {what}: {_detail(response)}", wire_bytes=wire)
        return Outcome(
            Verdict.RETRY,
            reason=f"HTTP {status}: {_detail(response)}",
            retry_after_s=_retry_after(response),
            wire_bytes=wire,
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _detail(response: httpx.Response) -> str:
    detail = _json(response).get("detail")
    if isinstance(detail, dict):
        return str(detail.get("reason") or detail)
    if detail:
        return str(detail)
    return (response.text or response.reason_phrase or "")[:300]


def _stow_failure(response: httpx.Response) -> str | None:
    """The Failure Reason and Error Comment of the first FailedSOPSequence item."""
    failed = (_json(response).get("00081198") or {}).get("Value") or []
    if not failed:
        return None
    first = failed[0]
    code = ((first.get("00081197") or {}).get("Value") or [None])[0]
    comment = ((first.get("00000902") or {}).get("Value") or [""])[0]
    return f"{comment} (DICOM status 0x{int(code):04X})" if code is not None else str(comment)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None

"""The compressed-body middleware (serving/api/encoding.py) as a plain ASGI app: no service needed."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from types import SimpleNamespace

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from serving.api.deps import read_body
from serving.api.encoding import RequestDecompression

LIMIT = 100_000


def _echo_app():
    seen: dict = {}

    async def app(scope, receive, send):
        body, more, chunks = b"", True, []
        while more:
            message = await receive()
            chunks.append(len(message.get("body", b"")))
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen.update(body=body, headers=dict(scope["headers"]), chunks=chunks)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app, seen


def _post(chunks, coding: str = "gzip", limit: int = LIMIT, in_memory: int = 1024 * 1024):
    """Run one request whose body arrives in ``chunks``; (status, detail, app's view, chunks read)."""
    app, seen = _echo_app()
    middleware = RequestDecompression(app, max_bytes=lambda: limit, in_memory_bytes=lambda: in_memory)
    scope = {"type": "http", "headers": [(b"content-encoding", coding.encode())]}
    chunks = list(chunks)
    read = 0

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    payload = sent[1]["body"]
    detail = json.loads(payload)["detail"]["reason"] if status >= 400 else None
    assert (b"accept-encoding", b"gzip, deflate") in sent[0]["headers"]
    return status, detail, seen, read


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def test_a_body_in_many_chunks_is_inflated_whole_with_its_new_length():
    doc = os.urandom(20_000) + b"x" * 50_000
    status, _, seen, _ = _post(_split(gzip.compress(doc), 1000))
    assert status == 201
    assert seen["body"] == doc
    assert seen["headers"][b"content-length"] == str(len(doc)).encode()
    assert b"content-encoding" not in seen["headers"]
    deflated = zlib.compress(doc)
    status, _, seen, _ = _post(_split(deflated, 4096), coding="deflate")
    assert status == 201 and seen["body"] == doc


def test_a_bomb_is_refused_as_soon_as_it_inflates_past_the_limit():
    """A stream whose inflated size passes the limit early: refused with 413 without reading the rest
    (the old middleware gathered every compressed chunk first)."""
    bomb = gzip.compress(b"\0" * (LIMIT * 50))
    chunks = _split(bomb, 64)
    status, detail, seen, read = _post(chunks)
    assert status == 413 and str(LIMIT) in detail
    assert not seen, "the route saw a body over the limit"
    assert read < len(chunks) // 2, f"read {read} of {len(chunks)} chunks before refusing"


def test_exactly_the_limit_passes_and_one_byte_more_does_not():
    assert _post([gzip.compress(b"a" * LIMIT)])[0] == 201
    assert _post([gzip.compress(b"a" * (LIMIT + 1))])[0] == 413


def test_corrupt_truncated_and_unknown_bodies_get_their_own_answers():
    status, detail, _, _ = _post([b"\x1f\x8b not gzip"])
    assert status == 400 and "does not inflate" in detail
    whole = gzip.compress(os.urandom(5000))
    status, detail, _, _ = _post([whole[: len(whole) // 2]])
    assert status == 400 and "truncated" in detail
    status, detail, _, _ = _post([b"data"], coding="br")
    assert status == 415 and "gzip" in detail


def test_a_large_inflated_body_reaches_the_route_whole_in_chunks():
    """Past ``in_memory_bytes`` (the spooled file rolls over to disk) the route reads it whole, 1 MiB at a time."""
    doc = os.urandom(1024 * 1024) * 3
    status, _, seen, _ = _post(_split(gzip.compress(doc), 65536), limit=4 * 1024 * 1024, in_memory=1000)
    assert status == 201
    assert seen["body"] == doc
    assert len(seen["chunks"]) == 3 and max(seen["chunks"]) <= 1024 * 1024


def test_an_upload_cut_off_mid_body_is_a_400_not_a_server_error():
    """The connection drops after the first chunk (a thin link): the route's body reader answers 400 with
    a reason, instead of letting Starlette's ClientDisconnect escape as an unhandled error."""
    limits = SimpleNamespace(spool_in_memory_bytes=1024)
    app = SimpleNamespace(
        state=SimpleNamespace(get_services=lambda: SimpleNamespace(config=SimpleNamespace(limits=limits)))
    )
    messages = iter([{"type": "http.request", "body": b"x" * 100, "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    scope = {"type": "http", "app": app, "method": "POST", "path": "/api/v1/ecg", "headers": [], "query_string": b""}
    with pytest.raises(HTTPException) as refused:
        asyncio.run(read_body(Request(scope, receive), 10_000, "ECG"))
    assert refused.value.status_code == 400 and "ended early" in refused.value.detail

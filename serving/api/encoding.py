"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), for senders on thin links.

A pure ASGI middleware: it inflates the body before any route sees it, so every route reads plain
bytes and keeps its own size limit; the inflated size is capped too (a small body that inflates
past ``max_bytes`` is refused with 413 as soon as it passes it; neither body is held beyond it). Every answer carries
`Accept-Encoding: gzip, deflate` so a client can learn what it may send (RFC 7694); an unknown
coding is refused with 415, corrupt data with 400.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ADVERTISED = b"gzip, deflate"


class RequestDecompression:
    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: Callable[[], int]):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def advertise(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"accept-encoding", ADVERTISED)]}
            await send(message)

        coding = next(
            (v.decode("latin-1").strip().lower() for k, v in scope["headers"] if k == b"content-encoding"), ""
        )
        if coding in ("", "identity"):
            await self.app(scope, receive, advertise)
            return
        if coding not in WBITS:
            await _answer(advertise, 415, f"Content-Encoding {coding!r} is not supported: send gzip, deflate or none")
            return
        # Inflate as the chunks arrive, so that neither the compressed nor the inflated body is ever held
        # beyond the limit: a sender streaming an endless body is cut off at ``limit`` inflated bytes.
        limit = self.max_bytes()
        inflater = zlib.decompressobj(WBITS[coding])
        parts: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            more = message.get("more_body", False)
            try:  # max_length >= 1 here (0 would mean "no limit"): size <= limit after every round
                part = inflater.decompress(message.get("body", b""), limit + 1 - size)
            except zlib.error as exc:
                await _answer(advertise, 400, f"the {coding} body does not inflate: {exc}")
                return
            size += len(part)
            parts.append(part)
            if size > limit:
                await _answer(advertise, 413, f"the inflated body exceeds the limit of {limit} bytes")
                return
        if not inflater.eof:
            await _answer(advertise, 400, f"the {coding} body is truncated")
            return
        body = b"".join(parts)
        del parts
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        headers.append((b"content-length", str(len(body)).encode()))
        delivered = False

        async def inflated() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, inflated, advertise)


async def _answer(send: Callable, status: int, reason: str) -> None:
    payload = json.dumps({"detail": {"field": "content-encoding", "reason": reason}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})

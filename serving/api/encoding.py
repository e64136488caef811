"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), for senders on thin links.

A pure ASGI middleware: it inflates the body before any route sees it, so every route reads plain
bytes and keeps its own size limit; the inflated size is capped too (a small body that inflates
past ``max_bytes`` is refused with 413 as soon as it passes it; the inflated body waits in a spooled
file, in memory only up to the routes' own spooling threshold). Every answer carries
`Accept-Encoding: gzip, deflate` so a client can learn what it may send (RFC 7694); an unknown
coding is refused with 415, corrupt data with 400.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
ADVERTISED = b"gzip, deflate"
CHUNK_BYTES = 1024 * 1024  # the inflated body reaches the route in chunks of this size


class RequestDecompression:
    """``max_bytes``: the largest inflated body any route accepts; ``in_memory_bytes``: how much of it
    is kept in memory before it spills to a temporary file (``limits.spool_in_memory_bytes``, as the
    routes' own spooling does). Both are read per request, so a reloaded configuration applies."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_bytes: Callable[[], int],
        in_memory_bytes: Callable[[], int] = lambda: 1024 * 1024,
    ):
        self.app, self.max_bytes, self.in_memory_bytes = app, max_bytes, in_memory_bytes

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
        with tempfile.SpooledTemporaryFile(max_size=self.in_memory_bytes(), prefix="preread-inflated-") as body:
            refusal = await _inflate_into(body, receive, coding, self.max_bytes())
            if refusal is not None:
                if refusal[0]:  # the client is still there to hear it
                    await _answer(advertise, *refusal)
                return
            size = body.tell()
            body.seek(0)
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
            headers.append((b"content-length", str(size).encode()))

            async def inflated() -> dict[str, Any]:
                if body.tell() >= size:  # all delivered: what comes next is the client's (a disconnect)
                    return await receive()
                chunk = body.read(CHUNK_BYTES)
                return {"type": "http.request", "body": chunk, "more_body": body.tell() < size}

            await self.app({**scope, "headers": headers}, inflated, advertise)


async def _inflate_into(out: BinaryIO, receive: Callable, coding: str, limit: int) -> tuple[int, str] | None:
    """Inflate the request body into ``out`` as its chunks arrive, so that neither the compressed nor the
    inflated body is ever held beyond ``limit`` (a sender streaming an endless body is cut off at the first
    byte past it). None when it inflated whole; else (status, reason), status 0 when the client went away."""
    inflater = zlib.decompressobj(WBITS[coding])
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return 0, "the client went away"
        more = message.get("more_body", False)
        try:  # max_length >= 1 here (0 would mean "no limit"): size <= limit after every round
            part = inflater.decompress(message.get("body", b""), limit + 1 - size)
        except zlib.error as exc:
            return 400, f"the {coding} body does not inflate: {exc}"
        size += len(part)
        if size > limit:
            return 413, f"the inflated body exceeds the limit of {limit} bytes"
        out.write(part)
    if not inflater.eof:
        return 400, f"the {coding} body is truncated"
    return None


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

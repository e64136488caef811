"""Compressed request bodies (`Content-Encoding: gzip` or `deflate`), for senders on thin links.

A pure ASGI middleware: it inflates the body before any route sees it, so every route reads plain
bytes and keeps its own size limit; the inflated size is capped too (a small body that inflates
past ``max_bytes`` is refused with 413 as soon as it passes it; the inflated body waits in a spooled
file by the routes' own spooling, serving/ingest/spool.py). Every answer carries
`Accept-Encoding: gzip, deflate` so a client can learn what it may send (RFC 7694); an unknown
coding is refused with 415, corrupt data with 400.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from serving.ingest.spool import BodyTooLarge, spool

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
        limit = self.max_bytes()
        try:  # the routes' own spooling (serving/ingest/spool.py), fed the inflated chunks as they come
            async with aclosing(_inflated_chunks(receive, coding, limit)) as chunks:
                body = await spool(chunks, limit, self.in_memory_bytes())
        except BodyTooLarge:
            await _answer(advertise, 413, f"the inflated body exceeds the limit of {limit} bytes")
            return
        except _NotInflatable as exc:
            await _answer(advertise, 400, str(exc))
            return
        except _ClientGone:
            return
        with body:
            size = body.seek(0, 2)
            body.seek(0)
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
            headers.append((b"content-length", str(size).encode()))

            async def inflated() -> dict[str, Any]:
                if body.tell() >= size:  # all delivered: what comes next is the client's (a disconnect)
                    return await receive()
                chunk = body.read(CHUNK_BYTES)
                return {"type": "http.request", "body": chunk, "more_body": body.tell() < size}

            await self.app({**scope, "headers": headers}, inflated, advertise)


class _NotInflatable(ValueError):
    """A corrupt or truncated compressed body (HTTP 400)."""


class _ClientGone(Exception):
    """The client disconnected before its body was complete: nobody to answer."""


async def _inflated_chunks(receive: Callable, coding: str, limit: int) -> AsyncIterator[bytes]:
    """The request body inflated as its chunks arrive. Each chunk inflates to at most one byte past what
    ``limit`` still allows, so a bomb is never inflated whole: the spool refuses at that byte."""
    inflater = zlib.decompressobj(WBITS[coding])
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        more = message.get("more_body", False)
        try:  # max_length >= 1 here (0 would mean "no limit"): the spool stops us once size > limit
            part = inflater.decompress(message.get("body", b""), limit + 1 - size)
        except zlib.error as exc:
            raise _NotInflatable(f"the {coding} body does not inflate: {exc}") from exc
        size += len(part)
        yield part
    if not inflater.eof:
        raise _NotInflatable(f"the {coding} body is truncated")


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

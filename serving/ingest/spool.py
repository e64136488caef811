"""Request bodies to disk, not memory: what one request may make the ingress hold is bounded.

A 200 MiB STOW-RS body used to be joined into one bytes object and split into copies of its parts
(three times its size at once, and glibc kept most of it afterwards). Here the body is streamed into a
SpooledTemporaryFile (in memory up to ``in_memory`` bytes, then a temporary file), and a multipart/related
body is split by scanning that file in fixed-size windows: each part goes to its own spooled file, so
the largest thing held in memory is one window, and later one part while it is validated and stored
(itself bounded by the per-object limit).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

WINDOW = 1024 * 1024  # bytes read at a time when scanning a spooled body


class BodyTooLarge(ValueError):
    """More than the request's limit arrived (HTTP 413)."""


class MalformedMultipart(ValueError):
    """A multipart/related body that cannot be split (HTTP 400)."""


async def spool(chunks: AsyncIterable[bytes], limit: int, in_memory: int) -> tempfile.SpooledTemporaryFile:
    """The streamed body in a spooled file positioned at 0; BodyTooLarge once more than ``limit`` arrive
    (the rest is never read)."""
    out = tempfile.SpooledTemporaryFile(max_size=in_memory, prefix="preread-body-")
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


@dataclass
class Part:
    headers: dict[str, str]  # lower-case names
    body: BinaryIO  # a spooled file positioned at 0; the caller closes it
    size: int

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()


def _headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return headers


def iter_parts(
    body: BinaryIO,
    boundary: str,
    in_memory: int,
    max_part: int | None = None,
    max_header: int = 16 * 1024,
    window: int = WINDOW,
) -> Iterator[Part]:
    """The parts of a multipart/related body read from ``body`` (a file), one at a time. Raises
    MalformedMultipart (no boundary, no closing boundary, a part without a header separator or with
    headers longer than ``max_header``) and BodyTooLarge (a part over ``max_part``)."""
    delimiter = b"--" + boundary.encode("latin-1")
    scanner = _Scanner(body, b"\r\n" + delimiter, window)
    # The preamble: everything up to the first delimiter (which may open the body without a CRLF).
    first = _find_first(body, delimiter, window)
    body.seek(first + len(delimiter))
    scanner.reset()
    while True:
        tail = scanner.read_exact(2)
        if tail == b"--":
            return  # the closing delimiter
        if tail != b"\r\n":
            raise MalformedMultipart("a multipart delimiter not followed by CRLF")
        head = b"" if scanner.read_exact(2, peek=True) == b"\r\n" else None  # a part without headers
        if head is not None:
            scanner.read_exact(2)
        else:
            head = scanner.read_until(b"\r\n\r\n", max_header)
        if head is None:
            raise MalformedMultipart("multipart part without a header/body separator")
        part = tempfile.SpooledTemporaryFile(max_size=in_memory, prefix="preread-part-")
        try:
            size = scanner.copy_until_delimiter(part, max_part)
        except BaseException:
            part.close()
            raise
        part.seek(0)
        yield Part(_headers(head), part, size)


def _find_first(body: BinaryIO, delimiter: bytes, window: int) -> int:
    body.seek(0)
    offset, carry = 0, b""
    while True:
        block = body.read(window)
        if not block:
            raise MalformedMultipart("multipart boundary not found in the body")
        data = carry + block
        at = data.find(delimiter)
        if at >= 0:
            return offset - len(carry) + at
        carry = data[-(len(delimiter) - 1) :] if len(delimiter) > 1 else b""
        offset += len(block)


class _Scanner:
    """Reads a file in windows, finding a delimiter that may straddle two of them."""

    def __init__(self, body: BinaryIO, delimiter: bytes, window: int):
        self.body, self.delimiter, self.window = body, delimiter, window
        self.buffer = b""

    def reset(self) -> None:
        self.buffer = b""

    def _fill(self) -> bool:
        block = self.body.read(self.window)
        self.buffer += block
        return bool(block)

    def read_exact(self, n: int, peek: bool = False) -> bytes:
        while len(self.buffer) < n and self._fill():
            pass
        if len(self.buffer) < n:
            raise MalformedMultipart("multipart body has no closing boundary (truncated request?)")
        out = self.buffer[:n]
        if not peek:
            self.buffer = self.buffer[n:]
        return out

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        while (at := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit or not self._fill():
                return None
        out, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
        return out

    def copy_until_delimiter(self, out: BinaryIO, limit: int | None) -> int:
        size, keep = 0, len(self.delimiter) - 1
        while True:
            at = self.buffer.find(self.delimiter)
            if at >= 0:
                size += at
                if limit is not None and size > limit:
                    raise BodyTooLarge(f"a part exceeds the limit of {limit} bytes")
                out.write(self.buffer[:at])
                self.buffer = self.buffer[at + len(self.delimiter) :]
                return size
            if len(self.buffer) > keep:  # all but a possible delimiter start is content
                size += len(self.buffer) - keep
                if limit is not None and size > limit:
                    raise BodyTooLarge(f"a part exceeds the limit of {limit} bytes")
                out.write(self.buffer[:-keep] if keep else self.buffer)
                self.buffer = self.buffer[-keep:] if keep else b""
            if not self._fill():
                raise MalformedMultipart("multipart body has no closing boundary (truncated request?)")

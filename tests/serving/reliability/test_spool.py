"""Request bodies spooled to disk and multipart/related split from the file (serving/ingest/spool.py):
the parts as sent whatever the read window (delimiter pieces, CRLFs and dashes inside the parts, parts
without headers), refusals of malformed bodies, parts over a limit refused without reading on."""

from __future__ import annotations

import asyncio
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.ingest.spool import BodyTooLarge, MalformedMultipart, iter_parts, spool

pytestmark = pytest.mark.reliability
BOUNDARY = "b0undary"


def multipart(parts: list[bytes], boundary: str = BOUNDARY, headers: bool = True) -> bytes:
    out = b""
    for content in parts:
        head = b"Content-Type: application/dicom\r\n" if headers else b""
        out += f"--{boundary}\r\n".encode() + head + b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def split(body: bytes, window: int = 7, max_part: int | None = None) -> list[tuple[dict, bytes]]:
    return [(p.headers, p.read()) for p in iter_parts(io.BytesIO(body), BOUNDARY, 64, max_part, window=window)]


# contents that contain pieces of the delimiter, CRLFs and dashes
CONTENT = st.lists(st.sampled_from([b"x", b"\r\n", b"--", b"--b0und", b"\r\n--b0", b"DICM", b"\x00"]), max_size=40).map(
    b"".join
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(CONTENT, min_size=1, max_size=4), st.integers(1, 64), st.booleans())
def test_same_parts_as_the_in_memory_splitter(parts, window, headers):
    body = multipart(parts, headers=headers)
    split_parts = split(body, window)
    assert [content for _, content in split_parts] == parts
    assert all(h == ({"content-type": "application/dicom"} if headers else {}) for h, _ in split_parts)


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary here at all",
        multipart([b"abc"])[:-12],  # truncated: no closing boundary
        f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode(),  # no header separator
    ],
)
def test_malformed_bodies_are_refused(body):
    with pytest.raises(MalformedMultipart):
        split(body)


def test_a_part_over_the_limit_is_refused_without_reading_on():
    with pytest.raises(BodyTooLarge):
        split(multipart([b"a" * 1000, b"b"]), window=64, max_part=999)
    assert split(multipart([b"a" * 1000]), window=64, max_part=1000)[0][1] == b"a" * 1000


def test_spool_keeps_small_bodies_in_memory_and_large_ones_on_disk():
    async def chunks(n: int, size: int):
        for _ in range(n):
            yield b"z" * size

    small = asyncio.run(spool(chunks(4, 100), limit=10_000, in_memory=1000))
    assert small.read() == b"z" * 400 and not small._rolled
    large = asyncio.run(spool(chunks(40, 100), limit=10_000, in_memory=1000))
    assert large._rolled and len(large.read()) == 4000
    with pytest.raises(BodyTooLarge):
        asyncio.run(spool(chunks(200, 100), limit=10_000, in_memory=1000))

"""Bytes on a thin link: lossless compression of what goes out, and a token-bucket bandwidth cap.

- DICOM images with native (uncompressed) pixel data: JPEG-LS lossless (pyjpegls), else the Deflated
  Explicit VR Little Endian transfer syntax. Both are lossless DICOM that any conformant receiver,
  the county service included, decodes; the SOP Instance UID is unchanged.
- DICOM waveforms (ECG) and other DICOM: Deflated Explicit VR Little Endian.
- WFDB records: re-zipped with deflate (carts often store them uncompressed).
- JSON / XML ECGs: `Content-Encoding: gzip`, only when the service says it accepts it (RFC 7694:
  the service's `Accept-Encoding` response header); otherwise as they are.
Everything is deterministic: the same item gives the same bytes on every retry.
"""

from __future__ import annotations

import gzip
import io
import logging
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGLSLossless

from preread.send.parcel import Kind, zip_record

log = logging.getLogger("preread.send.wire")
CHUNK = 16 * 1024


@dataclass(frozen=True)
class WireBody:
    content: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    raw_bytes: int = 0  # the file as queued, for the bytes-saved figures


def prepare(kind: Kind, data: bytes, compress: bool, server_encodings: frozenset[str]) -> WireBody:
    """The request body for one queued item."""
    if kind is Kind.DICOM:
        payload = compress_dicom(data) if compress else data
        boundary = f"preread-send-{uuid.uuid5(uuid.NAMESPACE_OID, str(len(payload))).hex}"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return WireBody(body, f'multipart/related; type="application/dicom"; boundary={boundary}', {}, len(data))
    if kind is Kind.ECG_ZIP:
        return WireBody(rezip(data) if compress else data, kind.media_type, {}, len(data))
    if compress and "gzip" in server_encodings:
        return WireBody(
            gzip.compress(data, compresslevel=9, mtime=0), kind.media_type, {"Content-Encoding": "gzip"}, len(data)
        )
    return WireBody(data, kind.media_type, {}, len(data))


def compress_dicom(data: bytes) -> bytes:
    """A lossless smaller encoding of one DICOM object, or the object unchanged if none is smaller."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        syntax = ds.file_meta.TransferSyntaxUID
    except Exception as exc:  # noqa: BLE001 - the uploader sends the original; the service gives the reason if it refuses
        log.warning("cannot re-encode a DICOM object (%s: %s): sent as it is", type(exc).__name__, exc)
        return data
    if syntax.is_compressed or syntax == DeflatedExplicitVRLittleEndian:
        return data
    candidates = []
    if "PixelData" in ds and ds.get("BitsAllocated") in (8, 16) and ds.get("SamplesPerPixel", 1) == 1:
        candidates.append(_jpegls)
    candidates.append(_deflated)
    for encode in candidates:
        try:
            out = encode(ds)
        except Exception as exc:  # noqa: BLE001 - e.g. no JPEG-LS plugin on this PC: the next candidate
            log.debug("%s not usable: %s: %s", encode.__name__, type(exc).__name__, exc)
            continue
        if len(out) < len(data):
            return out
    return data


def _jpegls(ds: pydicom.Dataset) -> bytes:
    copy = pydicom.dcmread(io.BytesIO(_write(ds)), force=True)  # compress() changes the dataset in place
    copy.compress(JPEGLSLossless, generate_instance_uid=False)  # the same instance: idempotent at the county
    return _write(copy)


def _deflated(ds: pydicom.Dataset) -> bytes:
    copy = pydicom.dcmread(io.BytesIO(_write(ds)), force=True)
    copy.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return _write(copy)


def _write(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def rezip(data: bytes) -> bytes:
    """The same record files, deflated; the original if that is not smaller."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {info.filename.rsplit("/", 1)[-1]: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    out = zip_record(files)
    return out if len(out) < len(data) else data


class TokenBucket:
    """At most ``rate`` bytes/s on average, bursts up to ``burst`` bytes; shared by all uploads."""

    def __init__(self, rate_bytes_s: float | None, burst: float | None = None):
        self.rate = rate_bytes_s
        self.capacity = burst if burst is not None else (max(rate_bytes_s, CHUNK) if rate_bytes_s else 0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def kbit(cls, kbit_s: float | None) -> TokenBucket:
        return cls(kbit_s * 1000 / 8 if kbit_s else None)

    def take(self, n: int) -> None:
        """Wait until ``n`` bytes may go out."""
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)

    def stream(self, content: bytes, sent: list[int] | None = None) -> Iterator[bytes]:
        """``content`` in chunks, paced by the bucket; ``sent[0]`` counts what went out."""
        for start in range(0, len(content), CHUNK):
            chunk = content[start : start + CHUNK]
            self.take(len(chunk))
            if sent is not None:
                sent[0] += len(chunk)
            yield chunk

"""For the reliability tests: the in-process service with its DICOM side, a C-STORE sender, and the
hypothesis strategies that mutate real objects."""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import pydicom
from hypothesis import strategies as st

# Values that break parsers: boundary lengths, negative and huge numbers.
_BOUNDARY_U32 = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\xff\x7f", b"\x01\x00\x00\x80"]
_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_bytes(draw, data: bytes, start: int = 0, max_edits: int = 6) -> bytes:
    """``data`` with 1..max_edits edits after ``start``: bit flips, overwrites with boundary values
    (declared lengths of 0xFFFFFFFF), truncation, insertions, deletions, duplicated ranges."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        if len(out) <= start + 1:
            break
        pos = draw(st.integers(start, len(out) - 1))
        kind = draw(st.sampled_from(["flip", "byte", "u32", "truncate", "insert", "delete", "duplicate"]))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[pos] = draw(st.integers(0, 255))
        elif kind == "u32":
            out[pos : pos + 4] = draw(st.sampled_from(_BOUNDARY_U32))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 256))]
        else:
            length = draw(st.integers(1, 512))
            out[pos:pos] = out[pos : pos + length]
    return bytes(out)


def dataset_start(data: bytes) -> int:
    """Offset of the first byte after the File Meta Information (mutations keep the meta intact
    where the sender needs it, e.g. to pick a presentation context)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    buffer = io.BytesIO(data)
    read_preamble(buffer, force=False)
    _read_file_meta_info(buffer)
    return buffer.tell()


@st.composite
def mutated_json_ecg(draw, body: dict) -> bytes:
    """A JSON ECG upload with structural damage: fields removed or replaced by arbitrary JSON, leads
    renamed, dropped, shortened or filled with junk; sometimes the text itself is mangled."""
    ecg = {**body, "leads": dict(body["leads"])}  # shallow: mutations replace values, never edit them
    leads = ecg["leads"]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                ["field", "drop_field", "lead_value", "drop_lead", "rename_lead", "rate", "short_lead", "sample"]
            )
        )
        if kind == "field":
            ecg[draw(st.sampled_from(["sampling_rate", "leads", "patient", "site", draw(st.text(max_size=6))]))] = draw(
                JSON_VALUES
            )
        elif kind == "drop_field":
            ecg.pop(draw(st.sampled_from(["sampling_rate", "leads", "patient", "site"])), None)
        elif isinstance(leads, dict) and leads:
            name = draw(st.sampled_from(sorted(leads)))
            if kind == "lead_value":
                leads[name] = draw(JSON_VALUES)
            elif kind == "drop_lead":
                leads.pop(name)
            elif kind == "rename_lead":
                leads[draw(st.text(max_size=5))] = leads.pop(name)
            elif kind == "rate":
                ecg["sampling_rate"] = draw(
                    st.one_of(
                        st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**9), st.text(max_size=5)
                    )
                )
            elif kind == "short_lead" and isinstance(leads[name], list):
                leads[name] = leads[name][: draw(st.integers(0, 50))]
            elif kind == "sample" and isinstance(leads[name], list) and leads[name]:
                i = draw(st.integers(0, len(leads[name]) - 1))
                leads[name] = list(leads[name])
                leads[name][i] = draw(
                    st.one_of(st.just(math.nan), st.just(math.inf), st.just(1e308), st.text(max_size=3), st.none())
                )
    text = json.dumps(ecg, allow_nan=True).encode()
    if draw(st.booleans()) and draw(st.booleans()):
        text = draw(mutated_bytes(text, max_edits=3))
    return text


@st.composite
def mutated_wfdb_zip(draw, record_dir: Path, record: str) -> bytes:
    """A WFDB record zip (.hea + .mat) with a damaged header (numbers changed, lines dropped), a
    damaged signal file, or a damaged archive."""
    header = (record_dir / f"{record}.hea").read_text()
    mat = (record_dir / f"{record}.mat").read_bytes()
    target = draw(st.sampled_from(["header", "signal", "zip"]))
    if target == "header":
        lines = header.splitlines()
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(lines) - 1))
            tokens = lines[i].split(" ")
            action = draw(st.sampled_from(["drop_line", "token", "drop_token"]))
            if action == "drop_line" and len(lines) > 1:
                lines.pop(i)
                continue
            j = draw(st.integers(0, len(tokens) - 1))
            if action == "token":
                tokens[j] = str(draw(st.one_of(st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=6))))
            elif len(tokens) > 1:
                tokens.pop(j)
            lines[i] = " ".join(tokens)
        header = "\n".join(lines) + "\n"
    elif target == "signal":
        mat = draw(mutated_bytes(mat))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{record}.hea", header)
        zf.writestr(f"{record}.mat", mat)
    data = buffer.getvalue()
    return draw(mutated_bytes(data)) if target == "zip" else data


def with_new_uids(data: bytes, n: int) -> bytes:
    """A copy of a DICOM object as study/series/instance number ``n`` (drawn by the test, so a
    replayed example builds the same bytes)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for i, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        setattr(ds, keyword, f"2.25.{n}{i}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@contextmanager
def local_service(cfg, ecg_reader):
    """The real API (TestClient: an unhandled exception fails the test instead of a 500), workflow,
    store and ECG model in-process, with the C-STORE SCP and the dispatcher (a fake CXR reader)."""
    from fastapi.testclient import TestClient

    from bench.county import wait_for
    from bench.standin_readers import StandInCxrReader
    from serving.local import create_local_app
    from serving.reading.runtime import start_local_dicom
    from tests.serving.conftest import Client

    app, services = create_local_app(cfg, reader=ecg_reader)
    runtime = start_local_dicom(services, StandInCxrReader())
    try:
        if cfg.dicom.enabled:
            wait_for(lambda: runtime.scp.running, 120, 0.05, "the SCP to listen")
        with TestClient(app, raise_server_exceptions=True) as http:
            client = Client(http, cfg)
            client.services, client.runtime = services, runtime
            yield client
    finally:
        runtime.stop()


class CStoreSender:
    """One association to the SCP, reopened when needed; sends Part 10 files as they are (pynetdicom
    reads the file meta and sends the dataset bytes undecoded) or datasets."""

    def __init__(self, port: int, objects: Iterable[bytes], calling: str = "DEMOSITE", ssl_context=None):
        from pynetdicom import AE

        self.port, self.assoc, self.ssl_context = port, None, ssl_context
        self.ae = AE(ae_title=calling)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 30
        for data in objects:
            meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
            self.ae.add_requested_context(str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)])

    def send(self, what):
        """Status dataset of one C-STORE (``what``: a path, sent as its bytes are; or Part 10 bytes,
        decoded and re-encoded by pynetdicom)."""
        from pynetdicom import _config

        if isinstance(what, (bytes, bytearray)):
            what = pydicom.dcmread(io.BytesIO(what))
        if self.assoc is None or not self.assoc.is_established:
            tls = (self.ssl_context, "localhost") if self.ssl_context is not None else None
            self.assoc = self.ae.associate("127.0.0.1", self.port, ae_title="PREREAD", tls_args=tls)
            assert self.assoc.is_established, "the SCP refused or dropped the association"
        # A file goes out chunked: pynetdicom reads only its meta and sends the dataset bytes as they
        # are, where otherwise it would parse and re-encode them (and a fuzzed object would reach the
        # SCP repaired, or not at all).
        chunked = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = not isinstance(what, pydicom.Dataset)
        try:
            return self.assoc.send_c_store(what)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = chunked

    def close(self):
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()

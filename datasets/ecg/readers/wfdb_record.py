"""WFDB records (PhysioNet / CinC Challenge 2021 layout: ``.hea`` + ``.mat``/``.dat``), as files or a zip."""

from __future__ import annotations

import io
import posixpath
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from datasets.ecg.errors import EcgInputError
from datasets.ecg.leads import mv_factor, normalize_leads, parse_number, parse_sex
from datasets.ecg.readers.base import EcgReader
from datasets.ecg.record import EcgRecord
from datasets.ecg.validate import check_duration, check_sampling_rate

__all__ = ["WfdbReader", "check_header", "parse_cinc_comments", "read_wfdb"]

MAX_ZIP_MEMBERS = 64
MAX_ZIP_BYTES = 256 * 1024 * 1024  # uncompressed; a 12-lead 10 s record is well under 1 MiB


def read_wfdb(source: bytes | bytearray | str | Path) -> EcgRecord:
    """Read one WFDB record (PhysioNet / CinC Challenge 2021 layout) into an EcgRecord.

    Args:
        source: zip bytes, a path to a zip, a path to the ``.hea`` (or ``.mat``/``.dat``) file, or the
            record path without extension. The zip must hold exactly one record (one ``.hea`` and the
            signal files it names, in the same folder).

    CinC header comments ``# Age:``, ``# Sex:``, ``# Dx:`` become ``patient["age"]``, ``patient["sex"]``
    ('M'/'F') and ``labels`` (SNOMED CT code strings, ``meta["label_system"] = "SNOMED-CT"``).

    Raises:
        EcgInputError: field "file" for a bad zip (no header, several records, unsafe member names,
            too large) or an unreadable record; "units" for non-voltage units; "leads" for unknown
            or duplicate lead names.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_wfdb_zip(bytes(source))
    path = Path(source)
    if path.suffix.lower() == ".zip" or (path.is_file() and zipfile.is_zipfile(path)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EcgInputError("file", f"cannot open {path}: {exc.strerror or exc}") from None
        return _read_wfdb_zip(data)
    record = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".mat") else path
    if not record.with_name(record.name + ".hea").is_file():
        raise EcgInputError("file", f"no WFDB header {record.name}.hea in {record.parent}")
    return _read_wfdb_record(record)


def _unsafe_member(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized) or "\x00" in normalized:
        return True
    return any(part == ".." for part in normalized.split("/"))


def _junk_member(name: str) -> bool:
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base.startswith("._") or base in (".DS_Store", "Thumbs.db")


def _read_wfdb_zip(data: bytes) -> EcgRecord:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise EcgInputError("file", f"not a readable zip archive ({exc})") from None
    with archive:
        for info in infos:
            if _unsafe_member(info.filename):
                raise EcgInputError(
                    "file",
                    f"the zip contains an unsafe file name {info.filename!r} (absolute path or '..'); "
                    "put the record's .hea and .mat/.dat files at the top of the zip",
                )
        infos = [info for info in infos if not _junk_member(info.filename)]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise EcgInputError(
                "file", f"the zip holds {len(infos)} files; one WFDB record (.hea + signal files) expected"
            )
        if sum(info.file_size for info in infos) > MAX_ZIP_BYTES:
            raise EcgInputError(
                "file", f"the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MiB; one ECG record expected"
            )
        headers = [info for info in infos if info.filename.lower().endswith(".hea")]
        if not headers:
            raise EcgInputError("file", "the zip holds no WFDB header (.hea) file")
        if len(headers) > 1:
            names = ", ".join(info.filename for info in headers[:5])
            raise EcgInputError("file", f"the zip holds {len(headers)} records ({names}); send one record per upload")
        header = headers[0]
        folder = posixpath.dirname(header.filename.replace("\\", "/"))
        record_name = posixpath.basename(header.filename)[: -len(".hea")]
        with tempfile.TemporaryDirectory(prefix="preread-wfdb-") as tmp:
            for info in infos:
                name = info.filename.replace("\\", "/")
                if posixpath.dirname(name) != folder:
                    continue
                target = Path(tmp) / posixpath.basename(name)
                try:
                    target.write_bytes(archive.read(info))
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    raise EcgInputError("file", f"cannot unpack {info.filename!r} from the zip ({exc})") from None
            record = _read_wfdb_record(Path(tmp) / record_name)
    record.meta["source"] = "zip"
    return record


def parse_cinc_comments(comments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """CinC header comments (``Age: 53``, ``Sex: Male``, ``Dx: 426783006,164889003``) → (patient
    fields ``age``/``sex``, SNOMED CT codes). ``Dx: Unknown`` gives no codes."""
    patient: dict[str, Any] = {}
    labels: list[str] = []
    for comment in comments or []:
        key, sep, value = str(comment).partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            age = parse_number(value)
            if age is not None and age >= 0:
                patient["age"] = age
        elif key == "sex":
            sex = parse_sex(value)
            if sex:
                patient["sex"] = sex
        elif key == "dx":
            labels = [code.strip() for code in value.split(",") if code.strip() and code.strip().lower() != "unknown"]
    return patient, labels


def _read_wfdb_record(record: Path) -> EcgRecord:
    check_header(record.with_name(record.name + ".hea"))
    try:
        rec = wfdb.rdrecord(str(record))
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if getattr(exc, "filename", None) else str(exc)
        raise EcgInputError("file", f"the WFDB header refers to a signal file that is missing: {missing}") from None
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types on damaged records
        raise EcgInputError("file", f"the WFDB record could not be read ({type(exc).__name__}: {exc})") from None
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[1] == 0:
        raise EcgInputError("file", "the WFDB record holds no signals")
    leads = normalize_leads(list(rec.sig_name or []))
    factors = []
    for lead, unit in zip(leads, rec.units or [None] * len(leads)):
        factor = mv_factor(unit)
        if factor is None:
            raise EcgInputError("units", f"lead {lead} is recorded in {unit!r}; expected mV or uV")
        factors.append(factor)
    signals = np.ascontiguousarray(rec.p_signal.T * np.asarray(factors)[:, None], dtype=np.float64)
    patient, labels = parse_cinc_comments(rec.comments)
    meta: dict[str, Any] = {"format": "wfdb", "record_name": rec.record_name}
    if labels:
        meta["label_system"] = "SNOMED-CT"
    if rec.base_date is not None:
        meta["acquisition_datetime"] = (
            f"{rec.base_date.isoformat()}T{rec.base_time.isoformat()}"
            if rec.base_time is not None
            else rec.base_date.isoformat()
        )
    return EcgRecord(
        signals=signals, leads=leads, sampling_rate=float(rec.fs), patient=patient, meta=meta, labels=labels
    )


def check_header(header: Path) -> None:
    """Refuse a header whose record line has no sampling rate, a zero or negative one, or more samples
    than a resting ECG may have, before any signal is read. (``wfdb`` itself reads a missing
    sampling frequency as 250 Hz and takes a negative one as given.)"""
    try:
        text = header.read_text(encoding="latin-1")
    except OSError as exc:
        raise EcgInputError("file", f"cannot open {header.name}: {exc.strerror or exc}") from None
    record_line = next(
        (
            line.split("#")[0].split()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ),
        None,
    )
    if not record_line or len(record_line) < 2:
        raise EcgInputError("file", f"{header.name} has no record line (name, number of signals, sampling rate ...)")
    if len(record_line) < 3:
        raise EcgInputError(
            "sampling_rate",
            f"missing from the WFDB header {header.name}: its record line "
            f"{' '.join(record_line)!r} gives no sampling frequency",
        )
    # "500", "500/1000" (counter frequency), "500/1000(0)" (base counter): the rate is before the '/'.
    rate_text = record_line[2].split("/")[0]
    rate_value = parse_number(rate_text)
    rate = check_sampling_rate(rate_text if rate_value is None else rate_value)
    if len(record_line) >= 4 and (n_samples := parse_number(record_line[3])) is not None and n_samples > 0:
        check_duration(int(n_samples), rate)


class WfdbReader(EcgReader):
    """A WFDB record: a zip holding one ``.hea`` and its signal files, or a path to the record."""

    name = "wfdb"
    description = "WFDB record (zip of .hea + .mat/.dat)"
    suffixes = (".zip", ".hea")
    content_types = ("application/zip", "application/x-zip-compressed", "application/x-zip")

    def sniff(self, head: bytes) -> bool:
        return head[:2] == b"PK" and head[2:4] in (b"\x03\x04", b"\x05\x06")

    def read(self, source: Any) -> EcgRecord:
        return read_wfdb(source)

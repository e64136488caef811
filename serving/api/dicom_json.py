"""DICOM answers for DICOMweb (PS3.18): the DICOM JSON Model (F.2) attributes, multipart/related bodies of
DICOM objects, STOW-RS failure items. Shared by the STOW-RS router (routes/stow.py) and the QIDO-RS/WADO-RS
router (routes/dicomweb.py)."""

from __future__ import annotations

import io
from typing import Any

import pydicom
from fastapi.responses import JSONResponse, Response

DICOM_JSON = "application/dicom+json"
DicomJson = dict[str, Any]  # one DICOM JSON Model object (PS3.18 F.2): tag → {"vr", "Value"}
MULTIPART_DICOM: dict[int | str, dict[str, Any]] = {
    200: {"content": {'multipart/related; type="application/dicom"': {}}}
}


class DicomJSONResponse(JSONResponse):
    media_type = DICOM_JSON


def attr(vr: str, *values: Any) -> dict[str, Any]:
    """One DICOM JSON attribute of value representation ``vr``; empty values leave it present without a Value."""
    values = [v for v in values if v not in (None, "")]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("US", "UL", "IS"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def content_type_params(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header as (media type in lower case, {parameter: value})."""
    main, *rest = [p.strip() for p in header.split(";")]
    params = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return main.lower(), params


def multipart_response(objects: list[tuple[bytes, str | None]]) -> Response:
    """DICOM objects (bytes, transfer syntax UID or None) as one multipart/related; type="application/dicom" body."""
    boundary = "preread-wado-boundary-7c1f"
    chunks = []
    for data, syntax in objects:
        ctype = "application/dicom" + (f"; transfer-syntax={syntax}" if syntax else "")
        chunks.append(f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(
        b"".join(chunks),
        media_type=None,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
    )


def transfer_syntax(data: bytes) -> str | None:
    """The Transfer Syntax UID in a Part 10 file's meta header, or None where it cannot be read."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=[])
        return str(header.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001 - an unreadable part has no transfer syntax to name
        return None


def failed_part(sop_class: str | None, sop_uid: str | None, reason: int, comment: str) -> dict[str, Any]:
    """A STOW-RS FailedSOPSequence item: the object (where known), the failure reason and its words."""
    item = {
        "00081150": attr("UI", sop_class),
        "00081155": attr("UI", sop_uid),
        "00081197": attr("US", reason),
        "00000902": attr("LO", comment[:64]),  # Error Comment: the reason in words
    }
    return item

"""POST /api/v1/ecg routes every reader's format by its bytes, keeps the cart's own read beside ours,
and refuses a bad header (missing / negative sampling rate, an 83-minute recording) with nothing stored."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir
from tests.serving.test_ecg_api import assert_nothing_stored

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "ecg"
PHILIPS = shared_data_dir() / "ecg" / "philips"


def _post(client, body: bytes, content_type: str = "application/octet-stream"):
    return client.http.post("/api/v1/ecg", content=body, headers={"content-type": content_type, **client.auth()})


@pytest.mark.parametrize(
    "path, fmt, content_type",
    [
        (PHILIPS / "3191723_ZZDEMOPTONLY_1-04_orig.xml", "philips", "application/xml"),
        (FIXTURES / "ge_muse_rest.xml", "ge_muse", "text/xml"),
        (FIXTURES / "ge_cardiosoft_rest.xml", "ge_cardiosoft", "application/octet-stream"),
        (FIXTURES / "hl7_aecg_rest.xml", "hl7_aecg", "application/xml"),
        (FIXTURES / "scp_ecg_rest.scp", "scp_ecg", "application/octet-stream"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_cart_formats_get_a_read_with_the_machines_read(local_client, path, fmt, content_type):
    r = _post(local_client, path.read_bytes(), content_type)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ai_read"
    machine = body["read"]["machine"]
    assert machine["statements"], machine
    assert set(machine["measurements"]) <= {
        "heart_rate_bpm",
        "rr_interval_ms",
        "pr_interval_ms",
        "p_duration_ms",
        "qrs_duration_ms",
        "qt_interval_ms",
        "qtc_bazett_ms",
        "qtc_fridericia_ms",
        "p_axis_deg",
        "qrs_axis_deg",
        "t_axis_deg",
    }
    study = local_client.services.db.get_study(body["study_uid"])
    original = study.instances[0]
    assert original.content_type == {"scp_ecg": "application/scp-ecg"}.get(fmt, "application/xml")
    assert f"({fmt})" in (study.description or "")


def test_philips_machine_measurements_reach_the_read(local_client):
    r = _post(local_client, (PHILIPS / "2020-5-18_15-48-11.xml").read_bytes(), "application/xml")
    assert r.status_code == 201, r.text
    machine = r.json()["read"]["machine"]
    assert machine["measurements"]["qrs_duration_ms"] == 102 and machine["measurements"]["qtc_bazett_ms"] == 412
    assert machine["statements"][0]["text"] == "Sinus rhythm"
    assert 50 < r.json()["read"]["measurements"]["heart_rate_bpm"] < 80  # ours, beside the cart's 64


def _wfdb_zip(record_line: list[str]) -> bytes:
    source = shared_data_dir() / "ecg" / "cinc2021" / "E07500"
    lines = source.with_suffix(".hea").read_text().splitlines()
    lines[0] = " ".join(record_line)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("E07500.hea", "\n".join(lines) + "\n")
        archive.writestr("E07500.mat", source.with_suffix(".mat").read_bytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda f: f[:2] + ["-1"] + f[3:], "sampling_rate"),
        (lambda f: f[:2], "sampling_rate"),
        (lambda f: f[:3] + [str(83 * 60 * 500)], "duration"),
    ],
)
def test_bad_headers_are_refused_and_nothing_is_stored(local_client, mutate, field):
    first = (shared_data_dir() / "ecg" / "cinc2021" / "E07500.hea").read_text().split("\n")[0].split()
    r = _post(local_client, _wfdb_zip(mutate(first)), "application/zip")
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field
    assert_nothing_stored(local_client)

"""Orthanc as the township PACS: a wrapped NIH radiograph uploaded to Orthanc is C-STOREd by
Orthanc to preread (the Ray app), and preread's SR + heatmap SC come back into Orthanc's copy of
the study (preread's results destination is this Orthanc)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest

from bench.county import wait_for
from tests.serving.conftest import RESULTS_PACS_PORT, free_port
from tests.serving.dicom_helpers import wrapped_nih

ORTHANC = shutil.which("Orthanc") or (shutil.which("/usr/sbin/Orthanc"))
# The township PACS speaks DICOMweb as a real one does: the plugin is on and the test uses it.
DICOMWEB_PLUGIN = next(
    (
        str(p)
        for p in (
            Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
            Path("/usr/lib/orthanc/libOrthancDicomWeb.so.1.7"),
        )
        if p.exists()
    ),
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
)

pytestmark = [pytest.mark.ray, pytest.mark.dicom_net, pytest.mark.peer("orthanc")]


@pytest.fixture
def orthanc(serve_client, tmp_path):
    http_port = free_port()
    config = {
        "Name": "preread-test-pacs",
        "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "index"),
        "HttpPort": http_port,
        "DicomPort": RESULTS_PACS_PORT,
        # Orthanc calls preread as the demo site's PACS; preread maps that calling AE to the site.
        "DicomAet": "DEMOSITE",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpBindAddress": "127.0.0.1",
        "DicomBindAddress": "127.0.0.1" if False else None,
        "DicomModalities": {"preread": ["PREREAD", "127.0.0.1", serve_client.cfg.dicom.port]},
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen([ORTHANC, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)

    def up():
        if process.poll() is not None:
            raise AssertionError(f"Orthanc exited: {process.stderr.read().decode()[-2000:]}")
        try:
            return client.get("/system").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 120, 0.3, "Orthanc to start")
    plugins = client.get("/plugins").json()
    assert "dicom-web" in plugins, f"Orthanc's DICOMweb plugin did not load: {plugins}"
    yield client
    client.close()
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_orthanc_round_trip(serve_client, cxr_registry, orthanc, nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[1]
    data = wrapped_nih(png, study_uid=pydicom.uid.generate_uid())
    study_uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID)
    # the modality sends to the PACS by STOW-RS (Orthanc's DICOMweb plugin)
    boundary = "orthanc-stow"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    )
    stowed = orthanc.post(
        "/dicom-web/studies",
        content=body,
        headers={
            "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "accept": "application/dicom+json",
        },
    )
    assert stowed.status_code == 200, stowed.text
    found = orthanc.post("/tools/lookup", content=study_uid).json()
    study_id = next(r["ID"] for r in found if r["Type"] == "Study")
    instance_id = orthanc.get(f"/studies/{study_id}/instances").json()[0]["ID"]
    echo = orthanc.post("/modalities/preread/echo", content="{}")
    assert echo.status_code == 200, echo.text
    sent = orthanc.post("/modalities/preread/store", json={"Resources": [instance_id], "Synchronous": True})
    assert sent.status_code == 200, sent.text

    # preread's read: an SR always; a heatmap secondary capture only when a finding is positive (no
    # threshold is forced here: the tiny model calls what it calls)
    reader = serve_client.auth(role="reader")

    def read_done():
        study = serve_client.http.get(f"/api/v1/studies/{study_uid}", headers=reader).json()
        return study if study.get("status") == "ai_read" and study["ai_read"].get("results") else None

    study = wait_for(read_done, 180, 1.0, "preread's read of the film")
    expected = ["DX", "OT", "SR"] if study["ai_read"]["heatmaps"] else ["DX", "SR"]

    # preread's results, found and fetched as a viewer would: QIDO-RS and WADO-RS on the PACS
    def results_back():
        query = "includefield=00080060&includefield=0020000E"
        try:
            instances = orthanc.get(
                f"/dicom-web/studies/{study_uid}/instances?{query}", headers={"accept": "application/dicom+json"}
            )
        except httpx.TransportError:  # Orthanc closes idle keep-alive connections after ~1 s: poll again
            return None
        ok = instances.status_code == 200 and len(instances.json()) >= len(expected)
        return instances.json() if ok else None

    instances = wait_for(results_back, 120, 1.0, "preread's results in Orthanc (QIDO-RS)")
    by_modality = {i["00080060"]["Value"][0]: i for i in instances}
    assert sorted(by_modality) == expected, sorted(by_modality)
    sr_entry = by_modality["SR"]
    series_uid, sop_uid = sr_entry["0020000E"]["Value"][0], sr_entry["00080018"]["Value"][0]
    wado = orthanc.get(
        f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
        headers={"accept": 'multipart/related; type="application/dicom"'},
    )
    assert wado.status_code == 200, wado.text[:300]
    sr = pydicom.dcmread(io.BytesIO(_first_part(wado)))
    assert sr.StudyInstanceUID == study_uid and sr.VerificationFlag == "UNVERIFIED"
    assert study["ai_read"]["results"]["ai_sr"]["sop_instance_uid"] == sr.SOPInstanceUID


def _first_part(response: httpx.Response) -> bytes:
    """The first part of a multipart/related WADO-RS answer."""
    ctype = response.headers["content-type"]
    boundary = next(p.split("=", 1)[1].strip('"') for p in ctype.split(";") if p.strip().startswith("boundary="))
    part = response.content.split(f"--{boundary}".encode())[1]
    return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]

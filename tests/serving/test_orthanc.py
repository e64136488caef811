"""Orthanc as the township PACS: a wrapped NIH radiograph uploaded to Orthanc is C-STOREd by
Orthanc to preread (the Ray app), and preread's SR + heatmap SC come back into Orthanc's copy of
the study (preread's results destination is this Orthanc)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pydicom
import pytest

from tests.serving.conftest import RESULTS_PACS_PORT, free_port
from tests.serving.dicom_helpers import wait_for, wrapped_nih

ORTHANC = shutil.which("Orthanc") or (shutil.which("/usr/sbin/Orthanc"))

pytestmark = [pytest.mark.ray, pytest.mark.dicom_net, pytest.mark.peer("orthanc")]


@pytest.fixture
def orthanc(serve_client, tmp_path):
    http_port = free_port()
    config = {
        "Name": "preread-test-pacs", "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "index"), "HttpPort": http_port, "DicomPort": RESULTS_PACS_PORT,
        # Orthanc calls preread as the demo site's PACS; preread maps that calling AE to the site.
        "DicomAet": "DEMOSITE", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "HttpBindAddress": "127.0.0.1", "DicomBindAddress": "127.0.0.1" if False else None,
        "DicomModalities": {"preread": ["PREREAD", "127.0.0.1", serve_client.cfg.dicom.port]},
        "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "Plugins": [],
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
    wait_for(up, 60, 0.3, "Orthanc to start")
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
    uploaded = orthanc.post("/instances", content=data, headers={"content-type": "application/dicom"})
    assert uploaded.status_code == 200, uploaded.text
    instance_id, study_id = uploaded.json()["ID"], uploaded.json()["ParentStudy"]
    echo = orthanc.post("/modalities/preread/echo", content="{}")
    assert echo.status_code == 200, echo.text
    sent = orthanc.post("/modalities/preread/store", json={"Resources": [instance_id], "Synchronous": True})
    assert sent.status_code == 200, sent.text

    study_uid = str(pydicom.dcmread(__import__("io").BytesIO(data), stop_before_pixels=True).StudyInstanceUID)

    def results_back():
        instances = orthanc.get(f"/studies/{study_id}/instances").json()
        return instances if len(instances) >= 3 else None
    instances = wait_for(results_back, 180, 1.0, "preread's SR and heatmap SC in Orthanc")
    modalities = sorted(orthanc.get(f"/instances/{i['ID']}/simplified-tags").json().get("Modality") for i in instances)
    assert modalities == ["DX", "OT", "SR"], modalities
    sr_id = next(i["ID"] for i in instances
                 if orthanc.get(f"/instances/{i['ID']}/simplified-tags").json().get("Modality") == "SR")
    sr = pydicom.dcmread(__import__("io").BytesIO(orthanc.get(f"/instances/{sr_id}/file").content))
    assert sr.StudyInstanceUID == study_uid and sr.VerificationFlag == "UNVERIFIED"
    study = serve_client.http.get(f"/api/v1/studies/{study_uid}", headers=serve_client.auth(role="reader")).json()
    assert study["status"] == "ai_read" and study["ai_read"]["results"]["ai_sr"]["sop_instance_uid"] == sr.SOPInstanceUID

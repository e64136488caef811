"""The DICOM path on Ray Serve (the session's serve_client): dcmtk into the SCP thread of the
ingress, the dispatcher, the real CXR model deployment (tiny, trained by training.cxr), DICOMweb."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from bench.county import wait_for
from serving.results import findings_from_sr, model_from_sr, triage_from_sr
from tests.serving.dicom_helpers import dcmtk, needs_dcmtk, storescu, wrapped_nih

pytestmark = pytest.mark.ray


def scp_up(client) -> None:
    port = str(client.cfg.dicom.port)
    wait_for(
        lambda: dcmtk("echoscu", "-aet", "DEMOSITE", "-aec", "PREREAD", "127.0.0.1", port).returncode == 0,
        120,
        0.5,
        "the SCP in the ingress replica",
    )


def study_status(client, study_uid, done=("ai_read", "no_ai_read", "ai_failed")):
    def look():
        r = client.http.get(f"/api/v1/studies/{study_uid}", headers=client.auth(role="reader"))
        return r.json() if r.status_code == 200 and r.json()["status"] in done else None

    return wait_for(look, 120, 0.3, f"study {study_uid} to be routed and read")


@needs_dcmtk
@pytest.mark.dicom_net
def test_storescu_to_ray_reaches_the_worklist(serve_client, cxr_registry, nih_dir, tmp_path):
    scp_up(serve_client)
    refused = dcmtk("echoscu", "-aet", "NOBODY", "-aec", "PREREAD", "127.0.0.1", str(serve_client.cfg.dicom.port))
    assert refused.returncode != 0
    files = [Path(get_testdata_file("CT_small.dcm")), Path(get_testdata_file("MR_small.dcm"))]
    for i, png in enumerate(
        sorted((nih_dir / "Pneumonia").glob("*.png"))[:1] + sorted((nih_dir / "No_findings").glob("*.png"))[:1]
    ):
        path = tmp_path / f"nih{i}.dcm"
        path.write_bytes(wrapped_nih(png, study_uid=pydicom.uid.generate_uid()))
        files.append(path)
    result = storescu(serve_client.cfg.dicom.port, files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study = study_status(serve_client, str(ds.StudyInstanceUID))
        if ds.Modality != "DX":
            assert study["status"] == "no_ai_read", study
        elif cxr_registry is None:
            assert study["status"] == "no_ai_read" and "not served" in study["ai_error"]
        else:
            assert study["status"] == "ai_read", study["ai_error"]
            read = study["ai_read"]
            assert read["model"]["name"] == "cxr" and study["level"] in ("critical", "urgent", "routine")
            assert {f["code"] for f in read["findings"]} and "ai_sr" in read["results"]
    assert serve_client.http.get("/readyz").status_code == 200


@pytest.mark.dicom_net
def test_dicomweb_on_ray_returns_the_real_models_sr(serve_client, cxr_registry, nih_dir):
    from dicomweb_client.api import DICOMwebClient

    cfg = serve_client.cfg
    web = DICOMwebClient(
        url=f"http://{cfg.http.host}:{cfg.http.port}/dicomweb",
        headers={"Authorization": f"Bearer {serve_client.token()}"},
    )
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[-1]
    dx = pydicom.dcmread(io.BytesIO(wrapped_nih(png, study_uid=pydicom.uid.generate_uid())))
    stored = web.store_instances([dx])
    assert len(stored.ReferencedSOPSequence) == 1
    study = study_status(serve_client, str(dx.StudyInstanceUID))
    assert study["status"] == "ai_read", study["ai_error"]
    results = study["ai_read"]["results"]
    sr = hd.sr.Comprehensive3DSR.from_dataset(
        web.retrieve_instance(dx.StudyInstanceUID, results["ai_sr"]["series_uid"], results["ai_sr"]["sop_instance_uid"])
    )
    assert sr.VerificationFlag == "UNVERIFIED" and sr.PreliminaryFlag == "PRELIMINARY"
    from_sr = {f["code"]: f for f in findings_from_sr(sr)}
    for finding in study["ai_read"]["findings"]:
        assert from_sr[finding["code"]]["probability"] == pytest.approx(finding["probability"], abs=1e-5)
        assert from_sr[finding["code"]]["positive"] == finding["positive"]
    assert triage_from_sr(sr)["level"] == study["level"]
    assert model_from_sr(sr)["name"] == "cxr"
    if "ai_sc" in results:
        sc = web.retrieve_instance(
            dx.StudyInstanceUID, results["ai_sc"]["series_uid"], results["ai_sc"]["sop_instance_uid"]
        )
        assert sc.PhotometricInterpretation == "RGB" and sc.pixel_array.ndim == 3
    found = web.search_for_studies(search_filters={"StudyInstanceUID": str(dx.StudyInstanceUID)})
    assert "SR" in found[0]["00080061"]["Value"]

"""The AI read of an image study as DICOM results, stored through the store: the TID 1500 SR and
the heatmap Secondary Capture become instances of the same study (role ``ai_sr`` / ``ai_sc``,
source ``ai``), so WADO-RS serves them and the PACS forward (serving/results/pacs.py) finds them.

They are written straight to the object store and the database, not re-parsed by the inbound
ingest: we made them, so there is nothing to validate or to route. Their UIDs derive from the
source instance and the model, so a read computed twice (a lease taken over from a slow worker)
stores the same objects, which the store keeps once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom

from models.read import PreRead
from serving.ingest.dicom import encode
from serving.ingest.ecg import uid_from_digest
from serving.results.sc import build_heatmap_sc
from serving.results.sr import build_ai_sr
from serving.store.db import Database, DicomAttributes, NewInstance
from serving.store.objects import ObjectStore
from serving.store.schema import Study

# Patient and study attributes the SR copies from its evidence (highdicom reads each one): Type 2,
# so "present, possibly empty" — a source that leaves one out gets it empty in the SR, instead of a
# failed AI read.
_SR_TYPE2_FROM_SOURCE = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass
class ResultObject:
    role: str
    dataset: pydicom.Dataset


def result_objects(source: pydicom.Dataset, read: PreRead, locale: str | None = None) -> list[ResultObject]:
    """The SR of ``read`` (always; its text in ``locale`` when given) and the SC of its first heatmap
    (when the read has its pixels)."""
    model = read.model.model_dump(mode="json")
    source_header = pydicom.Dataset(source)  # shallow copy without pixels for the SR evidence
    source_header.file_meta = source.file_meta
    if "PixelData" in source_header:
        del source_header.PixelData
    for keyword in _SR_TYPE2_FROM_SOURCE:  # senders omit Type 2 attributes; empty is what they mean
        if keyword not in source_header:
            setattr(source_header, keyword, "")

    def uid(role: str, part: str) -> str:
        return uid_from_digest(f"{source.SOPInstanceUID}:{read.model.name}:{read.model.version}:{role}", part)

    findings = [finding.model_dump(mode="json") for finding in read.findings]
    sr = build_ai_sr(
        [source_header],
        findings,
        model,
        read.triage.model_dump(mode="json"),
        series_instance_uid=uid("ai_sr", "series"),
        sop_instance_uid=uid("ai_sr", "instance"),
        locale=locale,
    )
    objects = [ResultObject("ai_sr", sr)]
    top = read.heatmaps[0] if read.heatmaps else None
    if top is not None and top.code in read.pixels:
        probability = next((f.probability for f in read.findings if f.code == top.code), None)
        label = f"{top.name or top.code}" + (f" {probability:.2f}" if probability is not None else "")
        overlay = np.asarray(read.pixels[top.code].overlay_rgb, dtype=np.uint8)
        sc = build_heatmap_sc(
            source_header,
            overlay,
            model,
            finding=label,
            series_instance_uid=uid("ai_sc", "series"),
            sop_instance_uid=uid("ai_sc", "instance"),
        )
        objects.append(ResultObject("ai_sc", sc))
    return objects


def store_results(
    db: Database, store: ObjectStore, study: Study, source: pydicom.Dataset, read: PreRead, locale: str | None = None
) -> dict[str, dict[str, str]]:
    """Build and store the result objects; role → their UIDs and WADO-RS link (``PreRead.results``)."""
    out: dict[str, dict[str, str]] = {}
    for item in result_objects(source, read, locale):
        ds = item.dataset
        stored = store.put(encode(ds), ".dcm")
        modality = str(ds.get("Modality") or "OT")
        db.accept_instance(
            NewInstance(
                sop_instance_uid=str(ds.SOPInstanceUID),
                study_uid=study.study_uid,
                site=study.site,
                modality=modality,
                content_type="application/dicom",
                storage_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                source="ai",
                sender="preread",
                series_uid=str(ds.SeriesInstanceUID),
                sop_class_uid=str(ds.SOPClassUID),
                patient_id=study.patient_id,
                patient_name=study.patient_name,
                patient_sex=study.patient_sex,
                patient_age=study.patient_age,
                description=str(ds.get("SeriesDescription") or "")[:256] or None,
            ),
            DicomAttributes(modality=modality, role=item.role),
        )
        out[item.role] = {
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID),
            "wado": f"/dicomweb/studies/{study.study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        }
    return out

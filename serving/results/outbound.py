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

from datasets.imaging.record import ImageRecord
from models.cxr.overlay import render_deferred_heatmaps
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


@dataclass(frozen=True)
class EncodedResult:
    """One result object as it is stored: its DICOM Part 10 bytes and what its instance row needs."""

    role: str
    data: bytes
    sop_instance_uid: str
    series_uid: str
    sop_class_uid: str
    modality: str
    description: str | None

    @classmethod
    def of(cls, item: ResultObject) -> EncodedResult:
        ds = item.dataset
        return cls(
            role=item.role,
            data=encode(ds),
            sop_instance_uid=str(ds.SOPInstanceUID),
            series_uid=str(ds.SeriesInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            modality=str(ds.get("Modality") or "OT"),
            description=str(ds.get("SeriesDescription") or "")[:256] or None,
        )


def source_header(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source image without its pixels, what the SR's evidence and the SC's references need;
    Type 2 patient/study attributes a sender left out are added empty (``_SR_TYPE2_FROM_SOURCE``)."""
    header = pydicom.Dataset(source)  # shallow copy
    header.file_meta = source.file_meta
    if "PixelData" in header:
        del header.PixelData
    for keyword in _SR_TYPE2_FROM_SOURCE:  # senders omit Type 2 attributes; empty is what they mean
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def result_objects(source: pydicom.Dataset, read: PreRead, locale: str | None = None) -> list[ResultObject]:
    """The SR of ``read`` (always; its text in ``locale`` when given) and the SC of its first heatmap
    (when the read has its pixels)."""
    model = read.model.model_dump(mode="json")
    header = source_header(source)

    def uid(role: str, part: str) -> str:
        return uid_from_digest(f"{source.SOPInstanceUID}:{read.model.name}:{read.model.version}:{role}", part)

    findings = [finding.model_dump(mode="json") for finding in read.findings]
    sr = build_ai_sr(
        [header],
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
            header,
            overlay,
            model,
            finding=label,
            series_instance_uid=uid("ai_sc", "series"),
            sop_instance_uid=uid("ai_sc", "instance"),
        )
        objects.append(ResultObject("ai_sc", sc))
    return objects


def warm_worker() -> None:
    """Nothing to do: a worker process that runs it has imported this module (highdicom, pydicom, the
    overlay), so the first study it gets does not wait for those imports."""


def encoded_results(
    source: pydicom.Dataset, read: PreRead, record: ImageRecord | None = None, locale: str | None = None
) -> list[EncodedResult]:
    """The CPU-heavy half of storing a read's results, with no I/O, so that it can run in a worker
    process (serving/reading/dispatcher.py): the heatmap pictures put on the image when the replica
    left them to us (``read.cam_maps`` and the image ``record``), then the SR and SC built and encoded."""
    if read.cam_maps and record is not None:
        render_deferred_heatmaps(read, record)
    return [EncodedResult.of(item) for item in result_objects(source, read, locale)]


def store_encoded(
    db: Database, store: ObjectStore, study: Study, encoded: list[EncodedResult]
) -> dict[str, dict[str, str]]:
    """Store the encoded result objects; role → their UIDs and WADO-RS link (``PreRead.results``)."""
    out: dict[str, dict[str, str]] = {}
    for item in encoded:
        stored = store.put(item.data, ".dcm")
        db.accept_instance(
            NewInstance(
                sop_instance_uid=item.sop_instance_uid,
                study_uid=study.study_uid,
                site=study.site,
                modality=item.modality,
                content_type="application/dicom",
                storage_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                source="ai",
                sender="preread",
                series_uid=item.series_uid,
                sop_class_uid=item.sop_class_uid,
                patient_id=study.patient_id,
                patient_name=study.patient_name,
                patient_sex=study.patient_sex,
                patient_age=study.patient_age,
                description=item.description,
            ),
            DicomAttributes(modality=item.modality, role=item.role),
        )
        out[item.role] = {
            "sop_instance_uid": item.sop_instance_uid,
            "series_uid": item.series_uid,
            "wado": f"/dicomweb/studies/{study.study_uid}/series/{item.series_uid}/instances/{item.sop_instance_uid}",
        }
    return out

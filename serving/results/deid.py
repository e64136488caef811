"""De-identified training exports: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

What the profile does to each object (``Deidentifier.apply``), with the options chosen here:

- the action of every attribute in Table E.1-1 (the standard's table as shipped by the
  dicom-anonymizer package, edition 2026c): **D** replace with a dummy / pseudonym, **Z** empty,
  **X** remove, **K** keep, **U** replace the UID by one that is consistent across the export (the
  same original UID always maps to the same new one; the map is in the key store). Where the table
  leaves a choice (X/Z, Z/D, X/D, X/Z/D, X/Z/U*) the attribute is kept present and emptied or
  replaced (Z, D, U), so the objects stay valid for their IOD;
- all private attributes removed; curve data (50xx) and overlay data/comments (60xx) removed;
- **Retain Longitudinal Temporal Information with Modified Dates Option** (``dates="shift"``,
  the default): dates that the profile keeps present are shifted by one random offset per patient
  (intervals between a patient's studies survive; the offset is in the key store), times kept;
  ``dates="remove"`` empties them instead (the profile without the option);
- **Clean Structured Content Option** for SR (our AI SR): its Content Sequence is cleaned item by
  item by the same rules instead of replaced, so the findings survive as training labels;
- burned-in annotation: an object that says BurnedInAnnotation YES, or an image of a kind that
  often carries burned-in text (US, SC, OT, XC, ES…) without saying NO, is not exported (the
  manifest lists it with the reason): the profile does not clean pixels;
- PatientIdentityRemoved YES, De-identification Method (text and codes: DCM 113100 Basic Profile,
  113107 modified dates, 113104 clean structured content) and Longitudinal Temporal Information
  Modified are set.

Re-identification keys (``KeyStore``, serving/results/reid_keys.py): pseudonyms, UID maps and date
offsets live in their own SQLite file (``deid.key_store``; folder 0700, file 0600), apart from the
worklist database and never in an export. Whoever holds the export cannot reverse it; whoever holds the
key store (the service operator, for a patient's request or a safety recall) can.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from datasets.vocabulary.age import deidentified_age_band
from serving.results.reid_keys import KeyStore
from serving.store import claims

PROFILE_EDITION = "dicomfields_2026c"
METHOD_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113104": "Clean Structured Content Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}
# Kinds of image that often carry burned-in text: exported only when the object says it has none.
BURNED_IN_RISK = {"US", "SC", "OT", "XC", "ES", "GM", "SM", "DOC", "IVUS", "OP"}
# Where the table leaves a choice, the choice made (see the module docstring).
_CHOICE = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z",
    "X_Z_TAGS": "Z",
    "X_D_TAGS": "D",
    "X_Z_D_TAGS": "Z",
    "X_Z_U_STAR_TAGS": "U",
}
CONTENT_SEQUENCE = 0x0040A730


def annex_e_actions() -> dict[int, str]:
    """Table E.1-1 as {tag: action} (D, Z, X, U) with the choices above."""
    from dicomanonymizer.dicomfields_selector import (  # noqa: PLC0415 - loaded on the first export only
        dicom_anonymization_database_selector,
    )

    table = dicom_anonymization_database_selector(PROFILE_EDITION)
    actions: dict[int, str] = {}
    for category, action in _CHOICE.items():
        for tag in table[category]:
            if len(tag) != 2:
                continue  # repeating groups (curves 50xx, overlays 60xx): removed by _clean itself
            group, element = tag
            actions[(group << 16) | element] = action
    return actions


class Excluded(Exception):
    """The object is not exported; ``reason`` says why (listed in the manifest)."""


# --- one object -----------------------------------------------------------------------------------
def _shift_date(value: str, days: int) -> str:
    try:
        return (date(int(value[:4]), int(value[4:6]), int(value[6:8])) + timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, IndexError):
        return ""


def _dummy(vr: str) -> Any:
    if vr in ("DA",):
        return "19000101"
    if vr in ("TM",):
        return "000000"
    if vr in ("DT",):
        return "19000101000000"
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr in ("IS", "DS"):
        return "0"
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"\x00\x00"
    if vr == "SQ":
        return DicomSequence([])
    return "ANONYMIZED"


class Deidentifier:
    def __init__(self, keys: KeyStore, dates: str = "shift"):
        if dates not in ("shift", "remove"):
            raise ValueError(f"dates: 'shift' or 'remove', not {dates!r}")
        self.keys, self.dates = keys, dates
        self.actions = annex_e_actions()

    def check_burned_in(self, ds: Dataset) -> None:
        flag = str(ds.get("BurnedInAnnotation", "") or "").upper()
        if flag == "YES":
            raise Excluded("BurnedInAnnotation is YES: pixels may show identifying text")
        if not flag and "PixelData" in ds and str(ds.get("Modality", "")).upper() in BURNED_IN_RISK:
            raise Excluded(
                f"{ds.get('Modality')} image without BurnedInAnnotation NO: pixels may show identifying text"
            )

    def apply(self, source: Dataset) -> Dataset:
        """A de-identified copy of ``source`` (Excluded if it may not be exported)."""
        self.check_burned_in(source)
        ds = copy.deepcopy(source)
        patient_key = str(source.get("PatientID") or source.get("PatientName") or source.get("StudyInstanceUID"))
        pseudonym = self.keys.patient(patient_key)
        offset = self.keys.date_offset(patient_key) if self.dates == "shift" else None
        ds.remove_private_tags()
        self._clean(ds, pseudonym, offset)
        ds.PatientName, ds.PatientID = pseudonym, pseudonym
        ds.PatientIdentityRemoved = "YES"
        codes = ["113100", "113104"] + (["113107"] if offset is not None else [])
        ds.DeidentificationMethod = "; ".join(METHOD_CODES[c] for c in codes)[:64]
        items = []
        for code in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", METHOD_CODES[code]
            items.append(item)
        ds.DeidentificationMethodCodeSequence = DicomSequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if offset is not None else "REMOVED"
        if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds

    def _clean(self, ds: Dataset, pseudonym: str, offset: int | None) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            group = tag >> 16
            if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and (tag & 0xFFFF) in (0x3000, 0x4000)):
                del ds[elem.tag]  # curves; overlay data and comments
                continue
            action = self.actions.get(tag, "K")
            if elem.VR == "SQ" and (action in ("K", "U") or tag == CONTENT_SEQUENCE):
                # Nested attributes follow the same rules (U on a sequence: the UIDs inside are replaced).
                for item in elem.value or []:
                    self._clean(item, pseudonym, offset)
                continue
            if action == "X":
                del ds[elem.tag]
            elif action == "U":
                if elem.VR == "UI" and elem.value:
                    values = elem.value if elem.VM > 1 else [elem.value]
                    new = [self.keys.uid(str(v)) for v in values]
                    elem.value = new if elem.VM > 1 else new[0]
                else:
                    elem.value = ""
            elif action in ("D", "Z"):
                self._replace(ds, elem, action, pseudonym, offset)

    def _replace(self, ds: Dataset, elem, action: str, pseudonym: str, offset: int | None) -> None:
        vr = elem.VR
        if vr in ("DA", "DT") and offset is not None and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            shifted = [
                _shift_date(str(v)[:8], offset) + str(v)[8:] if vr == "DT" else _shift_date(str(v), offset)
                for v in values
            ]
            elem.value = shifted if elem.VM > 1 else shifted[0]
        elif vr == "TM" and offset is not None:
            return  # times of day carry no identity once dates moved (modified dates option)
        elif action == "Z":
            elem.value = DicomSequence([]) if vr == "SQ" else (b"" if vr in ("OB", "OW", "UN") else "")
        elif vr == "PN" or elem.tag in (0x00100020,):
            elem.value = pseudonym
        elif vr == "SQ":
            for item in elem.value or []:
                self._clean(item, pseudonym, offset)
        else:
            elem.value = _dummy(vr)


# --- the export ------------------------------------------------------------------------------------
@dataclass
class ExportSummary:
    out: Path
    studies: int = 0
    files: int = 0
    excluded: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "studies": self.studies, "files": self.files, "excluded": self.excluded}


def export_training(
    services: Any,
    out: str | Path,
    sites: list[str] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> ExportSummary:
    """Signed studies → ``out``/<study>/<object>.dcm (de-identified; non-DICOM ECGs as signals-only
    .npz) + manifest.json and labels.csv (the signed findings per study). The key store is updated,
    never copied."""
    cfg = services.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(cfg.deid.key_store, cfg.deid.max_date_shift_days)
    deid = Deidentifier(keys, cfg.deid.dates)
    summary = ExportSummary(out)
    latest: dict[str, Any] = {}
    for correction, study in claims.signed_reads(services.db, sites):
        latest[study.study_uid] = (correction, study)  # an amendment replaces the first signature
    rows = []
    try:
        for correction, study in (progress or (lambda x: x))(list(latest.values())):
            study = services.db.get_study(study.study_uid)
            files = _export_study(services, deid, study, out, summary)
            if not files:
                continue
            summary.studies += 1
            summary.files += len(files)
            rows.append(_label_row(services, keys, correction, study, files))
    finally:
        keys.close()
    _write_manifest(out, rows, summary, cfg.deid.dates)
    _write_labels(out, rows)
    return summary


def _export_study(services: Any, deid: Deidentifier, study, out: Path, summary: ExportSummary) -> list[str]:
    """One study's originals and AI SR, de-identified into its pseudonymous folder; the paths written
    (relative to ``out``). Objects the profile cannot clean go to ``summary.excluded``."""
    keys = deid.keys
    study_key = keys.uid(study.study_uid)
    folder = out / study_key.replace(".", "_")
    files = []
    for instance in study.instances:
        if (instance.role or "original") not in ("original", "ai_sr"):
            continue
        data = services.store.get(instance.storage_key)
        try:
            name, payload = _deidentified_object(services, deid, instance, data)
        except Excluded as exc:
            summary.excluded.append(
                {"study": study_key, "object": keys.uid(instance.sop_instance_uid), "reason": str(exc)}
            )
            continue
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(payload)
        files.append(f"{folder.name}/{name}")
    return files


def _label_row(services: Any, keys: KeyStore, correction, study, files: list[str]) -> dict[str, Any]:
    """A study's manifest entry: pseudonyms, the coarse demographics an export may carry, the signed findings."""
    return {
        "study": keys.uid(study.study_uid),
        "patient": keys.patient(_patient_key(services, study)),
        "site": study.site,
        "modality": study.modality,
        "patient_sex": study.patient_sex,
        "patient_age_band": deidentified_age_band(study.patient_age),
        "agree": correction.agree,
        "final_findings": correction.final_findings,
        "model": correction.model_name,
        "model_version": correction.model_version,
        "files": files,
    }


def _write_manifest(out: Path, rows: list[dict[str, Any]], summary: ExportSummary, dates: str) -> None:
    """manifest.json: the profile and options applied, every exported study, every excluded object."""
    manifest = {
        "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
        "options": ["Clean Structured Content"]
        + (["Retain Longitudinal Temporal Information Modified Dates"] if dates == "shift" else []),
        "table_edition": PROFILE_EDITION,
        "studies": rows,
        "excluded": summary.excluded,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))


def _write_labels(out: Path, rows: list[dict[str, Any]]) -> None:
    """labels.csv: one row per study, one 0/1 column per finding code signed anywhere in the export."""
    with open(out / "labels.csv", "w", newline="") as fh:
        codes = sorted({code for row in rows for code in row["final_findings"]})
        writer = csv.writer(fh)
        writer.writerow(["study", "patient", "modality", "site", "sex", "age_band", *codes])
        for row in rows:
            writer.writerow(
                [
                    row["study"],
                    row["patient"],
                    row["modality"],
                    row["site"],
                    row["patient_sex"],
                    row["patient_age_band"],
                    *[int(bool(row["final_findings"].get(c))) for c in codes],
                ]
            )


def _patient_key(services: Any, study) -> str:
    """The key a study's patient is pseudonymised under: the original Patient ID of its first DICOM
    object (what Deidentifier.apply uses), else the study."""
    for instance in study.instances:
        if instance.content_type == "application/dicom":
            try:
                ds = pydicom.dcmread(io.BytesIO(services.store.get(instance.storage_key)), stop_before_pixels=True)
                return str(ds.get("PatientID") or ds.get("PatientName") or ds.get("StudyInstanceUID"))
            except Exception:  # noqa: BLE001 - an unreadable object has no patient: fall back to the study
                break
    return study.study_uid


def _deidentified_object(services: Any, deid: Deidentifier, instance, data: bytes) -> tuple[str, bytes]:
    if instance.content_type == "application/dicom":
        ds = deid.apply(pydicom.dcmread(io.BytesIO(data)))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return f"{ds.SOPInstanceUID.replace('.', '_')}.dcm", buffer.getvalue()
    # An ECG sent as WFDB or JSON: only the signals go out (no header, no patient block).
    record = services.ecg.parse(data, instance.content_type, None)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        signals=np.asarray(record.signals, dtype=np.float32),
        sampling_rate=float(record.sampling_rate),
        leads=np.asarray(list(record.leads)),
    )
    return f"{deid.keys.uid(instance.sop_instance_uid).replace('.', '_')}.npz", buffer.getvalue()

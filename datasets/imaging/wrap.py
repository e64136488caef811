"""Wrap PNG training images (or any 2-D integer array) as valid radiograph DICOM.

Used by tests and the demo to send real NIH chest X-rays through C-STORE/STOW like a township DR
unit would. The result is a DX Image Storage – For Presentation object (or CR / Secondary Capture
for other modalities) with proper UIDs, MONOCHROME2, view position, body part and pixel spacing.

The window written into the header (center 2^(b-1), width 2^b) is the identity for b-bit data,
so ``read_dicom_image`` of the wrapped object returns exactly ``read_image_file`` of the PNG.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from datasets.imaging.files import gray_integers

DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
_SOP_CLASS_BY_MODALITY = {"DX": DX_IMAGE_STORAGE_FOR_PRESENTATION, "CR": CR_IMAGE_STORAGE}

# ChestX-ray14 lists 0.143 mm as the pixel spacing of its original acquisitions. The distributed
# 1024 × 1024 PNGs are downsampled from those, so their true spacing is coarser (about 0.3–0.4 mm);
# callers that care should pass the real value.
NIH_PIXEL_SPACING_MM = 0.143

# SNOMED CT "Chest" (DICOM CID 4031 mapping of Body Part Examined CHEST).
_CHEST_REGION = ("816094009", "SCT", "Chest")

# NIH image index: <8-digit patient id>_<3-digit follow-up>.png
_NIH_NAME = re.compile(r"^(\d{8})_(\d{3})$")


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _stable_uid(*parts: str) -> str:
    """A UID derived from its parts: wrapping the same pixels into the same study twice gives the
    same SOP Instance UID, so a re-send is a duplicate (idempotent at ingest), not a new image."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def wrap_array_as_dicom(
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    patient_id: str = "ANONYMOUS",
    patient_name: str = "",
    patient_sex: str = "",
    patient_birth_date: str = "",
    patient_age: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    accession_number: str = "",
    study_id: str = "",
    study_datetime: dt.datetime | None = None,
    study_description: str = "CHEST",
    series_description: str = "",
    series_number: int = 1,
    instance_number: int = 1,
    modality: str = "DX",
    view_position: str = "PA",
    body_part: str = "CHEST",
    pixel_spacing_mm: float | tuple[float, float] | None = NIH_PIXEL_SPACING_MM,
    institution_name: str | None = None,
    manufacturer: str = "preread",
    derivation_description: str | None = None,
) -> Dataset:
    """A 2-D unsigned integer array (uint8, or uint16 with ``bits_stored`` ≤ 16) → radiograph Dataset.

    Higher values are brighter (MONOCHROME2). The dataset has file meta (Explicit VR Little Endian)
    and can be written with ``dcmwrite(..., enforce_file_format=True)``.
    """
    stored, bits_allocated, bits_stored = _stored_pixels(pixels, bits_stored)
    modality = modality.upper()
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality, SECONDARY_CAPTURE_IMAGE_STORAGE)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or _stable_uid(study_uid, "series", series_number, modality)
    sop_uid = sop_uid or _stable_uid(study_uid, series_uid, hashlib.sha256(stored.tobytes()).hexdigest())

    ds = _new_instance(sop_class, sop_uid, modality, study_datetime or dt.datetime.now())
    ds.AccessionNumber = accession_number
    ds.Manufacturer = manufacturer
    if institution_name:
        ds.InstitutionName = institution_name
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    if series_description:
        ds.SeriesDescription = series_description
    ds.DerivationDescription = derivation_description or "Converted from a non-DICOM image by preread"
    _set_patient(ds, patient_name, patient_id, patient_birth_date, patient_sex, patient_age)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    _set_acquisition(ds, modality, body_part, view_position, pixel_spacing_mm)
    _set_pixels(ds, stored, bits_allocated, bits_stored)
    return ds


def _stored_pixels(pixels: np.ndarray, bits_stored: int | None) -> tuple[np.ndarray, int, int]:
    """(the pixels as stored: uint8 or little-endian uint16, bits allocated, bits stored); ValueError
    for anything that is not a 2-D unsigned image fitting in ``bits_stored``."""
    array = np.asarray(pixels)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    if array.dtype.kind not in "ui":
        raise ValueError(f"expected integer pixels, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError("pixel values must be within 0..65535")
    bits_allocated = 8 if array.dtype.itemsize == 1 and (bits_stored or 8) <= 8 else 16
    if bits_stored is None:
        bits_stored = bits_allocated if bits_allocated == 8 else max(8, int(np.ceil(np.log2(float(array.max()) + 1.0))))
    if not 1 <= bits_stored <= bits_allocated:
        raise ValueError(f"bits_stored {bits_stored} does not fit {bits_allocated}-bit samples")
    if array.size and int(array.max()) >= 2**bits_stored:
        raise ValueError(f"values up to {int(array.max())} do not fit in {bits_stored} bits")
    return np.ascontiguousarray(array.astype(np.uint8 if bits_allocated == 8 else "<u2")), bits_allocated, bits_stored


def _new_instance(sop_class: str, sop_uid: str, modality: str, when: dt.datetime) -> Dataset:
    """A dataset with its file meta, SOP identity, character set, modality and dates."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "PREREAD_WRAP"
    # UTF-8: patient names from village clinics are often not Latin-1.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.Modality = modality
    if sop_class == SECONDARY_CAPTURE_IMAGE_STORAGE:
        ds.ConversionType = "WSD"  # workstation: the pixels came from a file, not a modality
    return ds


def _set_patient(ds: Dataset, name: str, patient_id: str, birth_date: str, sex: str, age: str | None) -> None:
    """The patient module (age only where given)."""
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    if age:
        ds.PatientAge = age


def _set_acquisition(
    ds: Dataset,
    modality: str,
    body_part: str,
    view_position: str,
    pixel_spacing_mm: float | tuple[float, float] | None,
) -> None:
    """Body part, view, orientation, the DX presentation attributes and the pixel spacing."""
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    # Conventional radiograph display (PA or AP): rows run towards the patient's left, columns feet-ward.
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"  # unpaired body part
    ds.AnatomicRegionSequence = (
        DicomSequence([_code_item(*_CHEST_REGION)]) if body_part.upper() == "CHEST" else DicomSequence()
    )
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "IDENTITY"
        ds.DetectorType = ""
        ds.AcquisitionContextSequence = DicomSequence()
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if pixel_spacing_mm is not None:
        spacing = (pixel_spacing_mm, pixel_spacing_mm) if np.isscalar(pixel_spacing_mm) else tuple(pixel_spacing_mm)
        values = [f"{float(v):.6g}" for v in spacing]
        ds.ImagerPixelSpacing = values
        ds.PixelSpacing = values


def _set_pixels(ds: Dataset, stored: np.ndarray, bits_allocated: int, bits_stored: int) -> None:
    """The MONOCHROME2 image pixel module, with the identity window for ``bits_stored``-bit data."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = int(bits_stored)
    ds.HighBit = int(bits_stored) - 1
    ds.PixelRepresentation = 0
    # Identity window for b-bit data (PS3.3 C.11.2.1.2.1: center c-0.5, width w-1 spans 0..2^b-1).
    ds.WindowCenter = str(2 ** (int(bits_stored) - 1))
    ds.WindowWidth = str(2 ** int(bits_stored))
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = stored.tobytes()


def nih_patient_id(path: str | Path) -> str | None:
    """The patient id encoded in an NIH ChestX-ray14 file name (``00001280_004.png`` → ``00001280``)."""
    match = _NIH_NAME.match(Path(path).stem)
    return match.group(1) if match else None


def wrap_png_as_dicom(
    png_path: str | Path,
    *,
    patient_id: str | None = None,
    patient_name: str = "",
    patient_sex: str = "",
    patient_birth_date: str = "",
    patient_age: str | None = None,
    study_uid: str | None = None,
    modality: str = "DX",
    **kwargs: Any,
) -> Dataset:
    """An NIH-style PNG (8/16-bit, gray, gray+alpha, RGB[A]) → DX For Presentation DICOM Dataset.

    Photometric MONOCHROME2, view position PA, body part CHEST, pixel spacing 0.143 mm unless
    overridden through ``kwargs`` (see ``wrap_array_as_dicom``). The patient id defaults to the NIH
    patient number in the file name. A new study UID is generated when none is given.
    """
    array, bits, _ = gray_integers(png_path)
    patient_id = patient_id or nih_patient_id(png_path) or "ANONYMOUS"
    kwargs.setdefault("derivation_description", f"Converted from PNG {Path(png_path).name} by preread")
    return wrap_array_as_dicom(
        array,
        bits_stored=bits,
        patient_id=patient_id,
        patient_name=patient_name,
        patient_sex=patient_sex,
        patient_birth_date=patient_birth_date,
        patient_age=patient_age,
        study_uid=study_uid,
        modality=modality,
        **kwargs,
    )

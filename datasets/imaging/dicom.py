"""DICOM image → display-ready ImageRecord (the pipeline a radiologist's viewer applies).

Order, as in the DICOM grayscale pipeline (PS3.4 N.2): decode one frame → Modality LUT (rescale
slope/intercept or Modality LUT Sequence) → VOI LUT (VOI LUT Sequence, else the first Window
Center/Width, else a robust 0.5–99.5 % percentile window) → scale to [0, 1] → invert MONOCHROME1.
Colour images (RGB, YBR_*, PALETTE COLOR) are reduced to luminance, since chest networks are
grayscale. Compressed transfer syntaxes decode through whatever pydicom pixel plugins are
installed (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls, pydicom's own RLE); a syntax without
one fails with an ImageInputError that names it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels import pixel_array as decode_pixel_array

from datasets.imaging.errors import ImageInputError
from datasets.imaging.record import ImageRecord

# ITU-R BT.601 luma weights: the ones DICOM's YBR_FULL definition uses (PS3.3 C.7.6.3.1.2).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# The fallback window when the header has none: robust to a few hot/dead pixels and to collimator
# borders, unlike min/max.
PERCENTILE_WINDOW = (0.5, 99.5)

# A header window that leaves less than this spread (in [0, 1]) between the 0.5th and 99.5th
# percentile has crushed the image (wrong window for this data); we fall back to the percentile
# window rather than send the network a flat picture.
MIN_WINDOWED_SPREAD = 0.02

# Attributes the LUT functions read; copied into a small per-frame view so that enhanced
# multi-frame objects (values in functional groups) go through the same code.
_LUT_KEYWORDS = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)


def to_unit_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low``→0 and ``high``→1 linearly, clip, float32.

    Every reader goes through this one function (in float64) so that the same stored value gives
    bit-for-bit the same display value whether it came in a PNG or a DICOM.
    """
    span = float(high) - float(low)
    if span == 0:
        return np.zeros(np.shape(values), dtype=np.float32)
    out = (np.asarray(values, dtype=np.float64) - float(low)) / span
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def percentile_window(
    values: np.ndarray, percentiles: tuple[float, float] = PERCENTILE_WINDOW, max_samples: int = 1_000_000
) -> tuple[float, float]:
    """(low, high) at the given percentiles, estimated on a regular subsample for speed."""
    flat = np.asarray(values).reshape(-1)
    step = max(1, flat.size // max_samples)
    low, high = np.percentile(flat[::step].astype(np.float64), percentiles)
    return float(low), float(high)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) → (rows, cols) float64 luma with BT.601 weights."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * LUMA_WEIGHTS[0] + rgb[..., 1] * LUMA_WEIGHTS[1] + rgb[..., 2] * LUMA_WEIGHTS[2]


def _forced_read(stream: io.BytesIO | Path) -> Dataset:
    """Parse data without the Part 10 preamble ("DICM"), as some senders write a bare dataset.

    pydicom will then "parse" anything, so insist on the elements any image has.
    """
    ds = pydicom.dcmread(stream, force=True)
    if not any(keyword in ds for keyword in ("SOPClassUID", "Rows", "PixelData")):
        raise ImageInputError("file", "not a DICOM file (no preamble and no image attributes)")
    return ds


def load_dataset(source: bytes | bytearray | str | Path | Dataset) -> Dataset:
    """Bytes, a path or a Dataset → Dataset (pixel data not yet decoded)."""
    if isinstance(source, Dataset):
        return source
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            try:
                return pydicom.dcmread(io.BytesIO(data))
            except InvalidDicomError:
                return _forced_read(io.BytesIO(data))
        path = Path(source)
        if not path.is_file():
            raise ImageInputError("file", f"no such file: {path}")
        try:
            return pydicom.dcmread(path)
        except InvalidDicomError:
            return _forced_read(path)
    except ImageInputError:
        raise
    except Exception as exc:  # pydicom raises many types on garbage input
        raise ImageInputError("file", f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


def _frame_index(number_of_frames: int, frame: str | int) -> int:
    if frame == "first":
        return 0
    if frame == "middle":
        # The middle frame: for tomosynthesis or a short cine it is the most representative one.
        return number_of_frames // 2
    index = int(frame)
    if not 0 <= index < number_of_frames:
        raise ImageInputError("NumberOfFrames", f"frame {index} requested but the object has {number_of_frames}")
    return index


def _functional_group_item(ds: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """The per-frame item of a functional group macro, else the shared one, else None."""
    for groups_keyword, pick in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if not groups or pick >= len(groups):
            continue
        items = groups[pick].get(sequence)
        if items:
            return items[0]
    return None


def _lut_view(ds: Dataset, frame_index: int) -> Dataset:
    """A small dataset with the LUT attributes that apply to one frame.

    Enhanced multi-frame objects keep rescale and window in functional groups rather than at the top
    level; pydicom's LUT functions only read the top level, so we flatten them here.
    """
    view = Dataset()
    for keyword in _LUT_KEYWORDS:
        if keyword in ds:
            setattr(view, keyword, ds[keyword].value)
    transform = _functional_group_item(ds, frame_index, "PixelValueTransformationSequence")
    if transform is not None:
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if keyword in transform:
                setattr(view, keyword, transform[keyword].value)
    voi = _functional_group_item(ds, frame_index, "FrameVOILUTSequence")
    if voi is not None:
        for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
            if keyword in voi:
                setattr(view, keyword, voi[keyword].value)
    return view


def _decode_frame(ds: Dataset, frame: str | int) -> tuple[np.ndarray, int, int]:
    """Decoded pixels of one frame (rows, cols[, samples]), its index and the frame count."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        what = f" ({sop.name})" if sop else ""
        raise ImageInputError("PixelData", f"the object has no pixel data{what}; it is not an image")
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if keyword not in ds:
            raise ImageInputError(keyword, "missing; the pixel data cannot be interpreted without it")
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if not syntax:
        raise ImageInputError(
            "TransferSyntaxUID",
            "the dataset has no file meta transfer syntax; cannot tell how its pixel data is encoded",
        )
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageInputError("PixelData", f"transfer syntax {syntax.name} ({syntax}) has no decoder here") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise ImageInputError("PixelData", f"transfer syntax {syntax.name} ({syntax}) has no decoder here ({missing})")

    try:
        number_of_frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        number_of_frames = 1
    index = _frame_index(max(number_of_frames, 1), frame)
    try:
        array = decode_pixel_array(ds, index=index if number_of_frames > 1 else None)
    except ImageInputError:
        raise
    except Exception as exc:
        raise ImageInputError("PixelData", f"cannot decode {syntax.name} pixel data: {exc}") from exc
    return np.asarray(array), index, number_of_frames


def _grayscale_display(values: np.ndarray, view: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """Modality-LUT output → [0, 1] through the VOI stage; returns pixels and what window was used."""
    voi_sequence = view.get("VOILUTSequence")
    if voi_sequence:
        try:
            shown = apply_voi_lut(values, view, index=0, prefer_lut=True)
            lut = np.asarray(voi_sequence[0].LUTData, dtype=np.float64)
            # Normalise by the LUT's own output range: its values are what the sender meant as
            # darkest..brightest (the nominal descriptor range is often far wider than used).
            pixels = to_unit_range(shown, lut.min(), lut.max())
            if _spread(pixels) >= MIN_WINDOWED_SPREAD:
                return pixels, {"window_source": "voi_lut"}
        except Exception:  # noqa: BLE001 - malformed LUT: fall through to the window or the percentile window
            pass
    if "WindowCenter" in view and "WindowWidth" in view:
        try:
            shown = apply_voi_lut(values, view, index=0, prefer_lut=False)
            # The output range pydicom maps the window onto depends on bits, sign and rescale;
            # probing it with extreme inputs gives exactly the bounds it used.
            probe = apply_voi_lut(np.array([-1e30, 1e30]), view, index=0, prefer_lut=False)
            pixels = to_unit_range(shown, probe[0], probe[1])
            if _spread(pixels) >= MIN_WINDOWED_SPREAD:
                center = view["WindowCenter"].value
                width = view["WindowWidth"].value
                center = float(center[0] if view["WindowCenter"].VM > 1 else center)
                width = float(width[0] if view["WindowWidth"].VM > 1 else width)
                return pixels, {"window_source": "header", "window": (center, width)}
        except Exception:  # noqa: BLE001 - width < 1, non-numeric values...: use the percentile window
            pass
    low, high = percentile_window(values)
    if high <= low:
        low, high = float(np.min(values)), float(np.max(values))
    return to_unit_range(values, low, high), {"window_source": "percentile", "window": ((low + high) / 2, high - low)}


def _spread(pixels: np.ndarray) -> float:
    low, high = percentile_window(pixels)
    return high - low


def _colour_display(array: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, ds)
        bits = 16 if rgb.dtype.itemsize > 1 else 8
    elif array.ndim == 3 and array.shape[-1] >= 3:
        rgb = array[..., :3]  # YBR_* already converted to RGB by the decoder
    else:
        raise ImageInputError(
            "PhotometricInterpretation", f"{photometric} image with shape {array.shape} is not supported"
        )
    return to_unit_range(luminance(rgb), 0, 2**bits - 1)


def _positive_pair(value: Any) -> tuple[float, float] | None:
    try:
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def pixel_spacing_mm(ds: Dataset, frame_index: int = 0) -> tuple[float, float] | None:
    """(row, column) spacing in mm, or None when unknown.

    Pixel Spacing (patient plane) wins; else Imager Pixel Spacing (detector plane, which for a
    projection radiograph overstates anatomy by the magnification factor, so we divide by Estimated
    Radiographic Magnification Factor when given). A value of 0 (as in some CRs) means unknown.
    """
    measures = _functional_group_item(ds, frame_index, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        spacing = _positive_pair(measures.PixelSpacing)
        if spacing:
            return spacing
    spacing = _positive_pair(ds.get("PixelSpacing"))
    if spacing:
        return spacing
    spacing = _positive_pair(ds.get("ImagerPixelSpacing"))
    if spacing:
        try:
            magnification = float(ds.get("EstimatedRadiographicMagnificationFactor") or 1.0)
        except (TypeError, ValueError):
            magnification = 1.0
        if magnification > 0:
            spacing = (spacing[0] / magnification, spacing[1] / magnification)
        return spacing
    return None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def patient_fields(ds: Dataset) -> dict[str, Any]:
    """The Patient module fields we carry around (absent ones left out)."""
    fields = {
        "id": _text(ds, "PatientID"),
        "name": _text(ds, "PatientName"),
        "birth_date": _text(ds, "PatientBirthDate"),
        "sex": _text(ds, "PatientSex"),
        "age": _text(ds, "PatientAge"),
    }
    return {key: value for key, value in fields.items() if value is not None}


def acceptance_fields(ds: Dataset) -> dict[str, Any]:
    """Header attributes the acceptance check reads beyond the ImageRecord's own (absent ones left out):
    Image Type, Patient Species Description, Patient Orientation."""
    fields: dict[str, Any] = {}
    for key, keyword in (("image_type", "ImageType"), ("patient_orientation", "PatientOrientation")):
        value = ds.get(keyword)
        if value:
            fields[key] = [str(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
    species = _text(ds, "PatientSpeciesDescription")
    if species:
        fields["species"] = species
    return fields


def read_dicom_image(source: bytes | str | Path | Dataset, *, frame: str | int = "middle") -> ImageRecord:
    """Read a DICOM image into a display-ready ImageRecord.

    Args:
        source: the file's bytes, a path, or an already parsed Dataset.
        frame: for multi-frame objects, ``"middle"`` (default), ``"first"`` or a 0-based index.

    Raises:
        ImageInputError: not DICOM, no pixel data, no decoder for the transfer syntax, or pixel data
            that cannot be decoded (truncated, inconsistent attributes).
    """
    ds = load_dataset(source)
    array, frame_index, number_of_frames = _decode_frame(ds, frame)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    meta: dict[str, Any] = {
        "format": "dicom",
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
        "frame_index": frame_index,
        "number_of_frames": number_of_frames,
    }
    if array.ndim == 3 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        pixels = _colour_display(array, ds, photometric)
        meta["window_source"] = "full_range"
    else:
        view = _lut_view(ds, frame_index)
        try:
            values = apply_modality_lut(array, view)
        except Exception as exc:
            raise ImageInputError("ModalityLUTSequence", f"cannot apply the modality LUT: {exc}") from exc
        pixels, window = _grayscale_display(values, view)
        meta.update(window)
        if photometric == "MONOCHROME1":
            # MONOCHROME1: the minimum stored value is shown white. The VOI output keeps that
            # sense, so invert after it (PS3.3 C.7.6.3.1.2).
            pixels = (1.0 - pixels).astype(np.float32)
    if pixels.ndim != 2:
        raise ImageInputError("PixelData", f"decoded to shape {pixels.shape}, expected a 2-D image")

    meta.update(acceptance_fields(ds))
    bits_stored = ds.get("BitsStored")
    return ImageRecord(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        spacing_mm=pixel_spacing_mm(ds, frame_index),
        photometric=photometric,
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient=patient_fields(ds),
        bits_stored=int(bits_stored) if bits_stored else None,
        meta=meta,
    )

"""Image readers, preprocessing geometry, phantoms and PNG → DICOM wrapping (datasets.imaging)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import MPEG2MPML, UID

from datasets.imaging import (
    DX_IMAGE_STORAGE_FOR_PRESENTATION,
    ImageInputError,
    LetterboxGeometry,
    chest_phantom,
    cxr_preprocess,
    heatmap_to_original,
    normalisation_for,
    phantom_dataset,
    preprocess_image,
    preprocess_with_geometry,
    read_dicom_image,
    read_image,
    read_image_file,
    wrap_array_as_dicom,
    wrap_png_as_dicom,
)


def pydicom_file(name: str) -> str:
    # download=False: never reach for the network; files from pydicom-data are optional.
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available (install pydicom-data for the external test files)")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = True  # not an image syntax question; the test decides
    if not available:
        pytest.skip(f"no pixel decoder plugin installed for {syntax.name}")
    return path


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def check_display(pixels: np.ndarray) -> None:
    assert pixels.dtype == np.float32 and pixels.ndim == 2
    assert np.isfinite(pixels).all()
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert pixels.max() - pixels.min() > 0.2, "image came out (nearly) flat"


# --- DICOM reading ---------------------------------------------------------------------------


def test_real_pa_chest_cr_monochrome1_is_inverted_lungs_dark_mediastinum_bright():
    record = read_dicom_image(pydicom_file("RG1_UNCR.dcm"))
    check_display(record.pixels)
    assert record.photometric == "MONOCHROME1"
    assert record.modality == "CR" and record.body_part == "CHEST" and record.view_position == "PA"
    assert record.bits_stored == 15
    assert record.meta["window_source"] == "header" and record.meta["window"] == (15000.0, 30000.0)
    assert record.spacing_mm is None  # the header says 0.000 \ 0.000: unknown, not zero
    rows, cols = record.shape
    band = slice(int(0.30 * rows), int(0.50 * rows))
    right_lung = record.pixels[band, int(0.20 * cols) : int(0.32 * cols)].mean()
    left_lung = record.pixels[band, int(0.68 * cols) : int(0.80 * cols)].mean()
    mediastinum = record.pixels[band, int(0.46 * cols) : int(0.54 * cols)].mean()
    assert mediastinum > right_lung + 0.15 and mediastinum > left_lung + 0.15
    # Without the inversion the same stored values would show lungs bright.
    raw = pydicom.dcmread(pydicom_file("RG1_UNCR.dcm")).pixel_array
    assert raw[band, int(0.20 * cols) : int(0.32 * cols)].mean() > raw[band, int(0.46 * cols) : int(0.54 * cols)].mean()


def test_jpeg2000_lossless_chest_matches_uncompressed():
    reference = read_dicom_image(pydicom_file("RG1_UNCR.dcm"))
    compressed = read_dicom_image(pydicom_file("RG1_J2KR.dcm"))
    assert compressed.meta["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.90"
    np.testing.assert_array_equal(compressed.pixels, reference.pixels)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE lossless
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # JPEG 2000, multi-frame
        ("emri_small_RLE.dcm", "emri_small.dcm"),  # RLE, multi-frame
        ("SC_rgb_rle.dcm", "SC_rgb.dcm"),  # RLE, RGB
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm"),  # JPEG lossless, RGB
    ],
)
def test_lossless_compressed_reads_identical_to_uncompressed(name, reference):
    got = read_dicom_image(pydicom_file(name))
    want = read_dicom_image(pydicom_file(reference))
    check_display(got.pixels)
    np.testing.assert_array_equal(got.pixels, want.pixels)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # signed, rescale slope/intercept, no window → percentile
        "MR_small.dcm",  # window in header
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL → RGB → luminance
        "JPEG2000.dcm",  # JPEG 2000 lossy, 16-bit
        "JPEG-LL.dcm",  # JPEG lossless process 14
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless
        "US1_J2KR.dcm",  # JPEG 2000, YBR_RCT colour
        "OBXXXX1A.dcm",  # PALETTE COLOR
        "mlut_18.dcm",  # Modality LUT Sequence
        "vlut_04.dcm",  # VOI LUT Sequence
        "emri_small_big_endian.dcm",  # big endian, multi-frame
    ],
)
def test_pydicom_test_images_read_to_display_range(name):
    record = read_dicom_image(pydicom_file(name))
    check_display(record.pixels)
    ds = pydicom.dcmread(pydicom_file(name), stop_before_pixels=True)
    assert record.shape == (ds.Rows, ds.Columns)
    assert record.sop_instance_uid == ds.SOPInstanceUID


def test_window_sources():
    assert read_dicom_image(pydicom_file("vlut_04.dcm")).meta["window_source"] == "voi_lut"
    assert read_dicom_image(pydicom_file("MR_small.dcm")).meta["window_source"] == "header"
    ct = read_dicom_image(pydicom_file("CT_small.dcm"))
    assert ct.meta["window_source"] == "percentile"
    assert ct.spacing_mm == pytest.approx((0.661468, 0.661468))


def test_multiframe_picks_middle_or_requested_frame():
    path = pydicom_file("emri_small.dcm")
    middle = read_dicom_image(path)
    assert (middle.meta["frame_index"], middle.meta["number_of_frames"]) == (5, 10)
    first = read_dicom_image(path, frame="first")
    assert first.meta["frame_index"] == 0
    assert not np.array_equal(first.pixels, middle.pixels)
    assert read_dicom_image(path, frame=9).meta["frame_index"] == 9
    with pytest.raises(ImageInputError) as info:
        read_dicom_image(path, frame=10)
    assert info.value.field == "NumberOfFrames"


def test_bytes_path_and_dataset_sources_agree():
    path = pydicom_file("MR_small.dcm")
    by_path = read_dicom_image(path)
    by_bytes = read_dicom_image(Path(path).read_bytes())
    by_dataset = read_dicom_image(pydicom.dcmread(path))
    np.testing.assert_array_equal(by_path.pixels, by_bytes.pixels)
    np.testing.assert_array_equal(by_path.pixels, by_dataset.pixels)
    assert by_bytes.patient == by_path.patient and by_path.patient["id"]


def test_not_an_image_is_a_pixeldata_error():
    with pytest.raises(ImageInputError) as info:
        read_dicom_image(pydicom_file("waveform_ecg.dcm"))
    assert info.value.field == "PixelData" and "not an image" in info.value.reason
    assert isinstance(info.value, ValueError)


def test_transfer_syntax_without_decoder_is_named():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    with pytest.raises(ImageInputError) as info:
        read_dicom_image(ds)
    assert info.value.field == "PixelData"
    assert "has no decoder here" in info.value.reason and "MPEG2" in info.value.reason


def test_truncated_pixel_data_and_garbage_are_reported():
    with pytest.raises(ImageInputError) as info:
        read_dicom_image(pydicom_file("MR_truncated.dcm"))
    assert info.value.field == "PixelData"
    with pytest.raises(ImageInputError) as info:
        read_dicom_image(b"this is not a DICOM file at all")
    assert info.value.field == "file"


@pytest.mark.skipif(importlib.util.find_spec("deid_data") is None, reason="deid-data not installed")
def test_deid_data_dx_radiograph():
    import deid_data

    path = Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"
    record = read_dicom_image(path)
    check_display(record.pixels)
    assert record.modality == "DX" and record.body_part == "CHEST" and record.view_position == "AP"
    assert record.spacing_mm == pytest.approx((0.14, 0.14))
    assert record.shape == (2614, 3072)


# --- PNG / JPEG ------------------------------------------------------------------------------


def test_nih_pngs_read(nih_dir):
    paths = sorted(nih_dir.glob("*/*.png"))
    assert len(paths) == 40
    for path in paths:
        record = read_image_file(path)
        assert record.shape == (1024, 1024) and record.bits_stored == 8
        check_display(record.pixels)
    # A chest film: the lung fields are darker than the mediastinum.
    record = read_image_file(paths[0])
    assert record.pixels[350:650, 450:570].mean() > record.pixels[350:650, 200:350].mean()


def test_png_modes_rgba_gray_alpha_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    Image.fromarray(np.stack([gray, gray, gray, np.full_like(gray, 255)], -1)).save(tmp_path / "rgba.png")
    Image.fromarray(np.stack([gray, np.full_like(gray, 128)], -1)).save(tmp_path / "la.png")
    reference = read_image_file(tmp_path / "l.png").pixels
    np.testing.assert_array_equal(reference, (gray / 255.0).astype(np.float32))
    np.testing.assert_array_equal(read_image_file(tmp_path / "rgba.png").pixels, reference)
    np.testing.assert_array_equal(read_image_file(tmp_path / "la.png").pixels, reference)

    twelve_bit = rng.integers(0, 4096, (40, 60)).astype(np.uint16)
    twelve_bit[0, 0] = 4095
    Image.fromarray(twelve_bit).save(tmp_path / "i16.png")
    record = read_image_file((tmp_path / "i16.png").read_bytes())
    assert record.bits_stored == 12
    np.testing.assert_allclose(record.pixels, twelve_bit / 4095.0, atol=1e-6)

    with pytest.raises(ImageInputError) as info:
        read_image_file(b"\x89PNG\r\n\x1a\n broken")
    assert info.value.field == "file"


# --- PNG → DICOM -----------------------------------------------------------------------------


def test_png_wrapped_as_dx_dicom_reads_back_identical(nih_dir):
    png = sorted((nih_dir / "Pneumonia").glob("*.png"))[0]
    ds = wrap_png_as_dicom(png, patient_name="Wang^Li", patient_sex="F", study_uid="1.2.3.4.5")
    data = dicom_bytes(ds)
    back = pydicom.dcmread(io.BytesIO(data))
    pydicom.dataset.validate_file_meta(back.file_meta)
    assert back.SOPClassUID == DX_IMAGE_STORAGE_FOR_PRESENTATION
    assert back.file_meta.MediaStorageSOPClassUID == DX_IMAGE_STORAGE_FOR_PRESENTATION
    assert back.Modality == "DX" and back.PresentationIntentType == "FOR PRESENTATION"
    assert back.PhotometricInterpretation == "MONOCHROME2"
    assert back.ViewPosition == "PA" and back.BodyPartExamined == "CHEST"
    assert [float(v) for v in back.PixelSpacing] == [0.143, 0.143]
    assert [float(v) for v in back.ImagerPixelSpacing] == [0.143, 0.143]
    assert back.StudyInstanceUID == "1.2.3.4.5"
    assert back.PatientID == png.stem.split("_")[0] and str(back.PatientName) == "Wang^Li"
    for keyword in ("SeriesInstanceUID", "SOPInstanceUID"):
        assert UID(back[keyword].value).is_valid

    np.testing.assert_array_equal(back.pixel_array, np.asarray(Image.open(png)))
    from_dicom = read_dicom_image(data)
    from_png = read_image_file(png)
    np.testing.assert_array_equal(from_dicom.pixels, from_png.pixels)
    assert from_dicom.spacing_mm == (0.143, 0.143)
    assert from_dicom.meta["window_source"] == "header"

    # Same pixels into the same study: same SOP Instance UID (a re-send is a duplicate).
    again = wrap_png_as_dicom(png, study_uid="1.2.3.4.5")
    assert again.SOPInstanceUID == ds.SOPInstanceUID
    assert wrap_png_as_dicom(png).StudyInstanceUID != ds.StudyInstanceUID


def test_wrap_16_bit_array_and_read_image_dispatch(tmp_path):
    phantom = chest_phantom(128, seed=3)
    ds = wrap_array_as_dicom(phantom.to_uint16(12), bits_stored=12, patient_id="P1", pixel_spacing_mm=0.3)
    path = tmp_path / "phantom.dcm"
    path.write_bytes(dicom_bytes(ds))
    record = read_image(path)
    assert record.bits_stored == 12 and record.spacing_mm == (0.3, 0.3)
    np.testing.assert_allclose(record.pixels, phantom.pixels, atol=1.0 / 4095)
    png = tmp_path / "phantom.png"
    Image.fromarray((phantom.pixels * 255).round().astype(np.uint8)).save(png)
    assert read_image(png).meta["format"] == "image"
    assert read_image(path.read_bytes()).meta["format"] == "dicom"


# --- preprocessing ---------------------------------------------------------------------------


def test_preprocess_shape_dtype_and_normalisation():
    image = np.zeros((300, 500), dtype=np.float32)
    out = preprocess_image(image)
    assert out.shape == (1, 224, 224) and out.dtype == np.float32
    mean, std = normalisation_for(1)
    np.testing.assert_allclose(out, (0.0 - mean[0]) / std[0], atol=1e-6)
    three = preprocess_image(np.ones((64, 64), dtype=np.float32), size=96, channels=3)
    assert three.shape == (3, 96, 96)
    mean3, std3 = normalisation_for(3)
    np.testing.assert_allclose(three[:, 48, 48], [(1 - m) / s for m, s in zip(mean3, std3)], atol=1e-5)
    # Values outside [0, 1] (hand-made arrays) are rescaled, not clipped to a flat image.
    stretched = preprocess_image(np.linspace(-100, 100, 64 * 64).reshape(64, 64), size=64)
    assert stretched.max() - stretched.min() > 3.0


def test_letterbox_keeps_aspect_and_pads():
    geometry = LetterboxGeometry.for_shape((300, 600), 224)
    assert geometry.resized_shape == (112, 224) and geometry.offset == (56, 0)
    out = cxr_preprocess(224)({"image": np.ones((300, 600), dtype=np.float32)})
    assert out["geometry"] == geometry
    unit = out["image"][0] * normalisation_for(1)[1][0] + normalisation_for(1)[0][0]
    assert np.allclose(unit[:56], 0.0, atol=1e-6) and np.allclose(unit[-56:], 0.0, atol=1e-6)
    assert np.allclose(unit[60:164], 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(300, 500), (512, 256), (1024, 1024)])
def test_heatmap_mapped_back_lands_on_the_object(shape):
    rows, cols = shape
    image = np.zeros(shape, dtype=np.float32)
    top, left, side = int(rows * 0.6), int(cols * 0.2), max(24, min(shape) // 8)
    image[top : top + side, left : left + side] = 1.0
    network_input, geometry = preprocess_with_geometry(image, size=224)
    # A "heatmap" in network-input space: the (de-normalised) input itself.
    mean, std = normalisation_for(1)
    heat = network_input[0] * std[0] + mean[0]
    # The square's centre maps to where the geometry says.
    r_in, c_in = geometry.to_input(top + side / 2 - 0.5, left + side / 2 - 0.5)
    ys, xs = np.nonzero(heat > 0.5)
    assert abs(ys.mean() - r_in) < 1.5 and abs(xs.mean() - c_in) < 1.5
    assert geometry.to_original(r_in, c_in) == pytest.approx((top + side / 2 - 0.5, left + side / 2 - 0.5))

    back = heatmap_to_original(heat, shape)
    assert back.shape == shape
    ys, xs = np.nonzero(back > 0.5)
    assert abs(ys.mean() - (top + side / 2 - 0.5)) < 2.0 and abs(xs.mean() - (left + side / 2 - 0.5)) < 2.0
    overlap = (back > 0.5) & (image > 0.5)
    assert overlap.sum() / (image > 0.5).sum() > 0.85


# --- phantoms --------------------------------------------------------------------------------


def test_phantom_findings_are_controlled():
    normal = chest_phantom(256, seed=7)
    assert not normal.abnormal and normal.finding_labels == "No Finding"
    assert normal.cardiothoracic_ratio < 0.5
    check_display(normal.pixels)
    lungs = normal.masks["lungs"]
    mediastinum_column = normal.pixels[60:120, 122:134].mean()
    assert normal.pixels[lungs].mean() + 0.2 < mediastinum_column  # dark lungs, bright midline

    big = chest_phantom(256, cardiomegaly=True, seed=7)
    assert big.findings["Cardiomegaly"] and big.cardiothoracic_ratio >= 0.55
    assert big.masks["heart"].sum() > normal.masks["heart"].sum() * 1.3

    wet = chest_phantom(256, effusion="right", seed=7)
    assert wet.findings["Effusion"] and wet.finding_labels == "Effusion"
    fluid = wet.masks["effusion"]
    assert fluid.any() and fluid[:, :128].sum() > 0 and fluid[:, 128:].sum() == 0  # patient's right = image left
    assert wet.pixels[fluid].mean() > normal.pixels[fluid].mean() + 0.2

    sick = chest_phantom(256, pneumonia=True, consolidation=True, seed=7)
    opacity = sick.masks["opacity"]
    assert opacity.any() and sick.finding_labels == "Pneumonia|Consolidation"
    assert sick.pixels[opacity].mean() > normal.pixels[opacity].mean() + 0.1

    np.testing.assert_array_equal(chest_phantom(128, seed=1).pixels, chest_phantom(128, seed=1).pixels)


def test_phantom_dataset_mixes_findings():
    images, findings = phantom_dataset(24, size=64, seed=0, prevalence=0.4)
    assert images.shape == (24, 64, 64) and images.dtype == np.float32
    assert any(any(f.values()) for f in findings) and any(not any(f.values()) for f in findings)


def test_imaging_package_stays_light():
    """Ingest reads and checks images without loading torch or MONAI."""
    code = "import sys, datasets.imaging; sys.exit(1 if {'torch', 'monai'} & set(sys.modules) else 0)"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "datasets.imaging imported torch or MONAI"

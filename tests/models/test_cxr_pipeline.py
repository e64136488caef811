"""The chest X-ray pre-read (models.cxr.pipeline.CxrPreReader) on a registered tiny model:
real radiographs (a wrapped NIH PNG, a MONOCHROME1 CR) → findings, triage, heatmaps in the
original geometry, and an SR built from the read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from datasets.imaging import preprocess_image, read_dicom_image, wrap_png_as_dicom
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES
from models.cxr.pipeline import CxrPreReader, load_cam_network
from models.cxr.read_parts import json_view
from models.read import PreRead
from models.registry import ModelRegistry
from models.triage import LEVELS
from training.config import TrainConfig, load_train_config
from training.cxr import train_cxr

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "configs" / "triage" / "cxr.yaml"
FINDING_KEYS = {"code", "name", "probability", "threshold", "positive", "drives_level", "source", "network_probability"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory) -> Path:
    """A real tiny model from our own training code (tests/data/cxr-tiny.yaml), registered."""
    root = tmp_path_factory.mktemp("cxr-pipeline")
    torch.set_num_threads(1)
    fields = load_train_config(REPO / "tests" / "data" / "cxr-tiny.yaml").model_dump()
    fields.update(checkpoint_dir=str(root / "checkpoints"), num_threads=1)
    train_cxr(TrainConfig.model_validate(fields), registry=ModelRegistry(root / "registry"), progress=False)
    return root / "registry"


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def nih_source(nih_dir) -> pydicom.Dataset:
    return wrap_png_as_dicom(sorted((nih_dir / "Pneumonia").glob("*.png"))[0])


@pytest.fixture(scope="module")
def cr_path() -> str:
    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    if path is None:
        pytest.skip("RG1_UNCR.dcm not available (install pydicom-data)")
    return path


def check_read(pre_read: PreRead, shape: tuple[int, int]) -> None:
    read, pixels = pre_read.to_json(), pre_read.pixels
    assert read["modality"] == "CXR" and read["preliminary"] is True and read["disclaimer"]
    assert [f["code"] for f in read["findings"]] == list(CXR_LABEL_CODES)
    for finding in read["findings"]:
        assert set(finding) == FINDING_KEYS
        assert 0.0 <= finding["probability"] <= 1.0 and isinstance(finding["positive"], bool)
        assert (
            finding["positive"] == (finding["probability"] >= finding["threshold"])
            or abs(finding["probability"] - finding["threshold"]) < 1e-4
        )  # rounding of the reported probability
    assert read["triage"]["level"] in LEVELS and 0.0 <= read["triage"]["score"] <= 1.0
    model = read["model"]
    assert model["name"] == "cxr" and model["version"] == 1 and model["demo"] is True
    assert model["backend"] == "onnxruntime" and model["architecture"] == "densenet_small"
    assert "not for clinical use" in model["intended_use"].lower()
    # Heatmaps for the positive findings that drive a level (learned from real films), at most 3.
    positives = [f for f in read["findings"] if f["positive"] and f["drives_level"]]
    assert len(read["heatmaps"]) == min(3, len(positives))
    for heat in read["heatmaps"]:
        assert heat["code"] in {f["code"] for f in positives}
        heatmap = pixels[heat["code"]].heatmap
        assert heatmap.shape == shape and heatmap.dtype == np.float32
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
        rgb = pixels[heat["code"]].overlay_rgb
        assert rgb.dtype == np.uint8 and rgb.shape == shape + (3,)  # pixel-aligned with the source
    assert read["quality"] == {"acceptable": True, "reasons": [], "action": None}


def test_read_wrapped_nih_png_and_monochrome1_cr(registry_root, nih_source, cr_path):
    # No threshold forced: whatever the tiny model calls positive gets a heatmap, nothing else does.
    reader = CxrPreReader.from_registry(registry_root, "cxr@champion", TRIAGE)
    assert reader.heatmaps_available and reader.size == 64 and reader.channels == 1
    nih = read_dicom_image(dicom_bytes(nih_source))
    cr = read_dicom_image(cr_path)
    assert cr.photometric == "MONOCHROME1" and cr.shape == (1955, 1841)

    pre_reads = reader.read_batch([nih, cr])
    assert len(pre_reads) == 2
    check_read(pre_reads[0], (1024, 1024))
    check_read(pre_reads[1], (1955, 1841))
    reads = [r.to_json() for r in pre_reads]
    for read in reads:
        positives = [f for f in read["findings"] if f["positive"] and f["drives_level"]]
        ranked = sorted(positives, key=lambda f: (f["code"] == "ANY", -f["probability"]))
        assert [h["code"] for h in read["heatmaps"]] == [f["code"] for f in ranked[:3]]
        assert read["timing"]["batch_size"] == 2
    assert reads[1]["source"]["photometric"] == "MONOCHROME1"
    stored = json.loads(json.dumps(json_view(pre_reads[1])))  # what goes into the store / API answer
    assert [h["shape"] for h in stored["heatmaps"]] == [[1955, 1841]] * len(reads[1]["heatmaps"])
    assert stored["findings"] == reads[1]["findings"]
    assert reader.read_batch([]) == []


def test_heatmap_overlay_geometry_equals_the_source(registry_root, cr_path):
    """Asked for maps explicitly (no threshold forced): each map and overlay has the source's rows and
    columns, and a hot spot in network-input space lands where that point is on the original."""
    from datasets.imaging import LetterboxGeometry, heatmap_to_original
    from models.cxr.overlay import overlay_for_source

    reader = CxrPreReader.from_registry(registry_root, "cxr", TRIAGE)
    cr = read_dicom_image(cr_path)
    network_input, geometry = reader.preprocess(cr)
    indices = [CXR_LABEL_CODES.index("PNEUMONIA"), CXR_LABEL_CODES.index("ANY")]
    heats = reader.heatmaps(cr, network_input, indices)
    assert [h["code"] for h in heats] == ["PNEUMONIA", "ANY"]
    for heat in heats:
        assert heat["heatmap"].shape == cr.shape and heat["overlay_rgb"].shape == cr.shape + (3,)
    # Alignment: a single hot input pixel maps back to the same place on the original.
    assert geometry == LetterboxGeometry.for_shape(cr.shape, reader.size)
    row, col = 1200.0, 500.0
    in_row, in_col = geometry.to_input(row, col)
    spot = np.zeros((reader.size, reader.size), np.float32)
    spot[round(in_row), round(in_col)] = 1.0
    back = heatmap_to_original(spot, cr.shape)
    hot = np.unravel_index(np.argmax(back), back.shape)
    assert abs(hot[0] - row) <= cr.shape[0] / reader.size and abs(hot[1] - col) <= cr.shape[1] / reader.size
    rgb = overlay_for_source(cr, back)
    assert rgb.shape == cr.shape + (3,)
    assert np.abs(rgb[hot].astype(int) - round(cr.pixels[hot] * 255)).max() > 20  # coloured at the spot
    far = (100, 1700)
    assert np.abs(rgb[far].astype(int) - round(cr.pixels[far] * 255)).max() <= 1  # untouched elsewhere


def test_no_positive_no_heatmap(registry_root, cr_path):
    reader = CxrPreReader.from_registry(
        registry_root, "cxr", TRIAGE, threshold_overrides={code: 1.0 for code in CXR_LABEL_CODES}
    )
    (read,) = [r.to_json() for r in reader.read_batch([read_dicom_image(cr_path)])]
    assert not any(f["positive"] for f in read["findings"]) and read["heatmaps"] == []
    with pytest.raises(KeyError):
        CxrPreReader.from_registry(registry_root, "cxr", TRIAGE, threshold_overrides={"STE": 0.5})


def test_backends_and_cam_network_agree(registry_root, nih_source, cr_path):
    """Probabilities from ONNX Runtime, TorchScript and the Grad-CAM network (state dict) match."""
    records = [read_dicom_image(dicom_bytes(nih_source)), read_dicom_image(cr_path)]
    ort_reader = CxrPreReader.from_registry(registry_root, "cxr/1", TRIAGE, heatmaps=False)
    torch_reader = CxrPreReader.from_registry(
        registry_root, "cxr/1", TRIAGE, backend="torch", heatmaps=False, device="cpu"
    )
    assert not ort_reader.heatmaps_available and torch_reader.model_identity["backend"] == "torch"
    p_ort = np.array(
        [[f["probability"] for f in r["findings"]] for r in (x.to_json() for x in ort_reader.read_batch(records))]
    )
    p_torch = np.array(
        [[f["probability"] for f in r["findings"]] for r in (x.to_json() for x in torch_reader.read_batch(records))]
    )
    np.testing.assert_allclose(p_ort, p_torch, atol=2e-4)  # reported probabilities are rounded to 1e-4

    registered = ModelRegistry(registry_root).resolve("cxr")
    network = load_cam_network(registered.path, device="cpu")
    batch = torch.from_numpy(np.stack([preprocess_image(r, size=64) for r in records]))
    with torch.no_grad():
        p_cam = torch.sigmoid(network(batch)).numpy()
    np.testing.assert_allclose(p_cam, ort_reader.backend.predict(batch.numpy()), atol=1e-4)


def test_sr_and_sc_built_from_the_read_round_trip(registry_root, nih_source):
    from serving.results import (
        build_ai_sr,
        build_heatmap_sc,
        findings_from_sr,
        model_from_sr,
        triage_from_sr,
    )

    reader = CxrPreReader.from_registry(registry_root, "cxr", TRIAGE)
    record = read_dicom_image(dicom_bytes(nih_source))
    (pre_read,) = reader.read_batch([record])
    read = pre_read.to_json()
    sr = build_ai_sr([nih_source], read["findings"], read["model"], read["triage"])
    parsed = pydicom.dcmread(io.BytesIO(dicom_bytes(sr)))
    assert parsed.VerificationFlag == "UNVERIFIED" and parsed.StudyInstanceUID == nih_source.StudyInstanceUID
    assert "DEMO" in parsed.SeriesDescription
    back = findings_from_sr(dicom_bytes(sr))
    assert [f["code"] for f in back] == [f["code"] for f in read["findings"]]
    for got, sent in zip(back, read["findings"]):
        assert got["positive"] == sent["positive"] and got["name"] == sent["name"]
        assert got["probability"] == pytest.approx(sent["probability"], abs=1e-6)
        assert got["threshold"] == pytest.approx(sent["threshold"], abs=1e-6)
    triage = triage_from_sr(dicom_bytes(sr))
    assert triage["level"] == read["triage"]["level"]
    assert triage["score"] == pytest.approx(read["triage"]["score"], abs=1e-6)
    assert model_from_sr(dicom_bytes(sr))["version"] == "1"

    (heat,) = reader.heatmaps(record, reader.preprocess(record)[0], [CXR_LABEL_CODES.index("PNEUMONIA")])
    sc = build_heatmap_sc(nih_source, heat["overlay_rgb"], read["model"], finding="Pneumonia")
    parsed_sc = pydicom.dcmread(io.BytesIO(dicom_bytes(sc)))
    # The secondary capture has the source's geometry; the label is an overlay plane, not a band.
    assert (parsed_sc.Rows, parsed_sc.Columns) == (nih_source.Rows, nih_source.Columns)
    np.testing.assert_array_equal(parsed_sc.pixel_array, heat["overlay_rgb"])
    assert parsed_sc.overlay_array(0x6000).any()


def test_film_failing_acceptance_is_not_read(registry_root, cr_path):
    """A rotated and a relabelled (MONOCHROME1 sent as MONOCHROME2) real chest film: no findings, no level
    from findings, the reasons and what to do in ``quality``; a good film in the same batch is read."""
    from copy import deepcopy

    ds = pydicom.dcmread(cr_path)
    rotated = deepcopy(ds)
    turned = np.ascontiguousarray(np.rot90(ds.pixel_array))
    rotated.Rows, rotated.Columns = turned.shape
    rotated.PixelData = turned.tobytes()
    relabelled = deepcopy(ds)
    relabelled.PhotometricInterpretation = "MONOCHROME2"
    reader = CxrPreReader.from_registry(registry_root, "cxr", TRIAGE)
    reads = [
        r.to_json()
        for r in reader.read_batch([read_dicom_image(rotated), read_dicom_image(ds), read_dicom_image(relabelled)])
    ]
    for read, code in ((reads[0], "cxr_rotated"), (reads[2], "cxr_inverted")):
        assert read["quality"]["acceptable"] is False and [r["code"] for r in read["quality"]["reasons"]] == [code]
        assert read["quality"]["action"] and read["findings"] == [] and read["heatmaps"] == []
        assert read["triage"]["level"] == "routine" and read["triage"]["reasons"][0].startswith("not read")
    assert reads[1]["quality"]["acceptable"] and len(reads[1]["findings"]) == len(CXR_LABEL_CODES)


def test_deferred_heatmaps_render_the_same_pictures_where_the_image_is(registry_root, cr_path):
    """A replica that defers overlays returns small uint8 maps in input space (kB, not MB); rendering
    them where the image is gives the source's geometry and (to uint8 rounding) the same heatmap."""
    from models.cxr.overlay import render_deferred_heatmaps

    cr = read_dicom_image(cr_path)
    direct = CxrPreReader.from_registry(registry_root, "cxr", TRIAGE)
    deferred = CxrPreReader.from_registry(registry_root, "cxr", TRIAGE, defer_overlays=True)
    index = CXR_LABEL_CODES.index("PNEUMONIA")
    # Plumbing, not the model's call (that is tests/models/test_cxr_real_films.py): the same finding must
    # be positive in both readers so that both make its heatmap.
    for reader in (direct, deferred):
        reader.card.thresholds["PNEUMONIA"] = 0.0
        reader.card.learned_from_real = {code: code == "PNEUMONIA" for code in CXR_LABEL_CODES}
    (full,) = direct.read_batch([cr])
    (small,) = deferred.read_batch([cr])
    assert small.pixels == {} and set(small.cam_maps) == {"PNEUMONIA"} == set(full.pixels)
    cam = small.cam_maps["PNEUMONIA"]
    assert cam.dtype == np.uint8 and cam.shape == (direct.size, direct.size)
    assert small.to_json()["heatmaps"] == full.to_json()["heatmaps"]
    render_deferred_heatmaps(small, cr)
    assert small.cam_maps == {}
    assert small.pixels["PNEUMONIA"].overlay_rgb.shape == cr.shape + (3,)
    np.testing.assert_allclose(small.pixels["PNEUMONIA"].heatmap, full.pixels["PNEUMONIA"].heatmap, atol=1 / 255 + 1e-6)
    assert index == CXR_LABEL_CODES.index(full.heatmaps[0].code)

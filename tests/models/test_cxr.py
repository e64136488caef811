"""Chest X-ray labels, networks, Grad-CAM and overlays (models.cxr)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.imaging import chest_phantom, heatmap_to_original, preprocess_image, read_image_file
from models.cxr import (
    ANY_ABNORMALITY,
    CXR_LABEL_CODES,
    CXR_LABELS,
    NUM_CXR_LABELS,
    PRIVATE_SCHEME,
    build_cxr_model,
    codes_from_nih,
    gradcam_heatmaps,
    multi_hot,
    record_heatmaps,
    render_overlay,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # On a shared 2-core machine two OpenMP threads fighting another process run many times
    # slower than one; these networks are small enough that one thread is plenty.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NIH_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)


def test_label_set():
    assert NUM_CXR_LABELS == 15 and len(set(CXR_LABEL_CODES)) == 15
    assert [label.nih_name for label in CXR_LABELS[:14]] == list(NIH_FINDINGS)
    assert CXR_LABEL_CODES[-1] == ANY_ABNORMALITY
    for label in CXR_LABELS:
        assert label.name and label.coding.meaning
        assert len(label.coding.value) <= 16  # fits a DICOM Code Value (SH)
        if label.coding.scheme == "SCT":
            assert label.coding.value.isdigit()
        else:
            assert label.coding.scheme == PRIVATE_SCHEME
    assert {l.code: l.coding.value for l in CXR_LABELS if l.coding.scheme == "SCT"}["PNEUMONIA"] == "233604007"  # noqa: E741


def test_nih_finding_labels_to_targets():
    assert codes_from_nih("Cardiomegaly|Effusion") == ["CARDIOMEGALY", "EFFUSION", "ANY"]
    assert codes_from_nih("No Finding") == []
    assert codes_from_nih(["Pleural_Thickening"]) == ["PLEURAL_THICKENING", "ANY"]
    with pytest.raises(ValueError):
        codes_from_nih("Cardiomegally")
    target = multi_hot(codes_from_nih("Pneumonia"))
    assert target.shape == (15,) and target.sum() == 2 and target[-1] == 1


@pytest.mark.parametrize(
    ("architecture", "in_channels"),
    [
        ("densenet121", 1),
        ("densenet121", 3),
        ("densenet_small", 1),
        ("densenet121_torchvision", 1),
    ],
)
def test_forward_shape(architecture, in_channels):
    model = build_cxr_model(architecture, in_channels=in_channels).eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, in_channels, 64, 64))
    assert logits.shape == (2, 15)


def test_densenet121_size_and_unknown_architecture():
    model = build_cxr_model("densenet121")
    assert 6_500_000 < sum(p.numel() for p in model.parameters()) < 7_500_000
    assert sum(p.numel() for p in build_cxr_model("densenet_small").parameters()) < 100_000
    with pytest.raises(ValueError):
        build_cxr_model("resnet9000")


@pytest.mark.parametrize("architecture", ["densenet_small", "densenet121_torchvision"])
def test_gradcam_shapes_and_model_left_untouched(architecture):
    torch.manual_seed(0)
    model = build_cxr_model(architecture)
    model.train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    x = torch.from_numpy(preprocess_image(chest_phantom(128, seed=0).pixels, size=64))
    with torch.inference_mode():  # as a serving replica would call it
        maps = gradcam_heatmaps(model, x, [0, 6, 14])
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    # Eval mode inside, restored after; no parameter gradients; no hooks left behind.
    assert model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # eval mode: BN statistics not updated
    if architecture == "densenet_small":
        assert dict(model.named_modules())["class_layers.relu"].inplace  # MONAI turns it off; we restore it
    assert gradcam_heatmaps(model, x, []).shape == (0, 64, 64)


def test_gradcam_highlights_the_object_in_a_toy_task():
    """Train the small DenseNet (seconds) to detect a bright square; Grad-CAM must point at it."""
    torch.manual_seed(0)
    size, side = 96, 20
    rng = np.random.default_rng(0)

    def batch(count):
        x = rng.normal(0, 0.05, (count, 1, size, size)).astype(np.float32)
        y = np.zeros((count, 1), np.float32)
        where = []
        for i in range(count):
            if rng.random() < 0.5:
                r, c = rng.integers(0, size - side, 2)
                x[i, 0, r : r + side, c : c + side] += 1.0
                y[i] = 1.0
                where.append((r, c))
            else:
                where.append(None)
        return torch.from_numpy(x), torch.from_numpy(y), where

    model = build_cxr_model("densenet_small", num_labels=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        x, y, _ = batch(16)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    x, y, where = batch(12)
    model.eval()
    with torch.no_grad():
        accuracy = ((torch.sigmoid(model(x)) > 0.5).float() == y).float().mean().item()
    assert accuracy >= 0.9
    checked = 0
    for image, position in zip(x, where):
        if position is None:
            continue
        heat = gradcam_heatmaps(model, image, [0])[0]
        r, c = position
        inside = np.zeros_like(heat, dtype=bool)
        inside[r : r + side, c : c + side] = True
        assert heat[inside].mean() > heat[~inside].mean() + 0.1
        checked += 1
    assert checked >= 3


def test_record_heatmaps_and_overlay_on_original_geometry(nih_dir):
    record = read_image_file(sorted((nih_dir / "Pneumonia").glob("*.png"))[0])
    model = build_cxr_model("densenet_small")
    maps = record_heatmaps(model, record, [6], size=64)
    assert maps.shape == (1, 1024, 1024) and np.isfinite(maps).all()

    # A synthetic hot spot: hot region is coloured, cold region keeps the radiograph's gray.
    heat = np.zeros(record.shape, dtype=np.float32)
    heat[100:200, 700:800] = 1.0
    rgb = render_overlay(record, heat, alpha=0.5)
    assert rgb.shape == (1024, 1024, 3) and rgb.dtype == np.uint8
    cold = rgb[600:700, 100:200].astype(int)
    assert np.all(cold[..., 0] == cold[..., 1]) and np.all(cold[..., 1] == cold[..., 2])
    np.testing.assert_allclose(cold[..., 0], np.rint(record.pixels[600:700, 100:200] * 255), atol=1)
    hot = rgb[120:180, 720:780].astype(int)
    assert (hot[..., 0] - hot[..., 2]).mean() > 40  # turbo's top end is red

    # A square map in network-input space is mapped back (padding removed) automatically.
    wide = np.zeros((200, 400), dtype=np.float32)
    small = np.zeros((64, 64), dtype=np.float32)
    small[16:48, 0:32] = 1.0  # left half of the 400-wide image
    shown = render_overlay(wide, small, max_side=100)
    assert shown.shape == (50, 100, 3)
    back = heatmap_to_original(small, wide.shape)
    assert back[:, :180].mean() > 0.8 and back[:, 220:].mean() < 0.05


def test_overlay_colours_are_matplotlibs_and_blend_by_heat():
    """The table-lookup colormap picks exactly matplotlib's colours; the blend is the plain
    formula (base·(1−αh) + colour·αh) to within one grey level, NaNs and out-of-range values clipped."""
    from matplotlib import colormaps

    from models.cxr.overlay import apply_colormap, render_overlay

    rng = np.random.default_rng(7)
    values = rng.random((64, 80)).astype(np.float32)
    values[0, :4] = [0.0, 1.0, 1 / 256, 255 / 256]  # the table's edges
    for name in ("turbo", "jet", "gray"):
        assert np.array_equal(apply_colormap(values, name), colormaps[name](values)[..., :3].astype(np.float32))

    base = rng.random((64, 80)).astype(np.float32) * 1.4 - 0.2
    heat = values.copy()
    heat[5, 5] = np.nan
    b = np.clip(np.nan_to_num(base), 0, 1)[..., None]
    h = np.clip(np.nan_to_num(heat), 0, 1)
    w = (0.45 * h)[..., None]
    expected = np.rint((b * (1 - w) + colormaps["turbo"](h)[..., :3] * w) * 255)
    got = render_overlay(base, heat)
    assert got.dtype == np.uint8 and got.shape == (64, 80, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(got[h == 0], np.rint(np.repeat(b[h == 0], 3, axis=-1) * 255).astype(np.uint8))

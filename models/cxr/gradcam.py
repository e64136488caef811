"""Grad-CAM heatmaps for chest X-ray classifiers (MONAI ``GradCAM``), and mapping them back onto
the original image.

Grad-CAM (Selvaraju et al. 2017) weighs the target layer's feature maps by the mean gradient of
one label's logit. We hook the last spatial feature map (``class_layers.relu`` for MONAI
DenseNets), so maps are coarse (7 × 7 at 224 px) and bilinearly upsampled to the input size.

Two things MONAI does that a serving replica must not keep: it registers forward/backward hooks
on the model permanently (one more pair per GradCAM object) and turns the target layer's
``inplace`` off. ``gradcam_heatmaps`` removes the hooks and restores the flag afterwards, so the
model is left exactly as it was. It also runs in eval mode with gradients enabled only inside the
call and only for the input (parameters get no ``.grad``), even under ``torch.no_grad`` or
``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import DEFAULT_CHANNELS, DEFAULT_SIZE, heatmap_to_original, preprocess_image
from models.cxr.network import guess_cam_target_layer

__all__ = ["gradcam_batch", "gradcam_heatmaps", "heatmap_to_original", "record_heatmaps"]

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def _temporary_gradcam(model: nn.Module, target_layer: str) -> Iterator[object]:
    from monai.visualize import GradCAM  # noqa: PLC0415 - MONAI's visualize stack is heavy; loaded for Grad-CAM only

    modules = dict(model.named_modules())
    if target_layer not in modules:
        raise ValueError(f"model has no layer named {target_layer!r}")
    module = modules[target_layer]
    before = {name: set(getattr(module, name, {})) for name in _HOOK_DICTS}
    inplace = module.__dict__.get("inplace")
    # postprocessing=identity: MONAI's default normaliser maps max→0 (flips the map); we normalise.
    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=_identity)
    try:
        yield cam
    finally:
        for name, keys in before.items():
            hooks = getattr(module, name, None)
            if hooks is None:
                continue
            for key in set(hooks) - keys:
                hooks.pop(key, None)
        if inplace is not None:
            module.inplace = inplace


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map min-max scaled to [0, 1]; a flat map (no evidence anywhere) becomes all zeros."""
    out = np.zeros_like(maps, dtype=np.float32)
    for index, plane in enumerate(maps):
        plane = np.nan_to_num(plane.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = plane.min(), plane.max()
        if high - low > 1e-12:
            out[index] = ((plane - low) / (high - low)).astype(np.float32)
    return out


def gradcam_heatmaps(
    model: nn.Module,
    input_tensor: torch.Tensor | np.ndarray,
    label_indices: Sequence[int],
    target_layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM maps for one preprocessed image.

    Args:
        model: a classifier from ``build_cxr_model`` (or any model with the named layer).
        input_tensor: (C, H, W) or (1, C, H, W), as produced by ``preprocess_image``.
        label_indices: output indices to explain (one map each, in this order).
        target_layer: module name to hook; default guessed from the model.

    Returns:
        float32 array (k, H, W) in [0, 1], in network-input space (use ``heatmap_to_original``
        to put it on the original image).
    """
    x = torch.as_tensor(np.asarray(input_tensor) if isinstance(input_tensor, np.ndarray) else input_tensor)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    indices = [int(i) for i in label_indices]
    if not indices:
        return np.zeros((0,) + tuple(x.shape[-2:]), dtype=np.float32)
    layer = target_layer or guess_cam_target_layer(model)
    parameter = next(model.parameters())

    was_training = model.training
    requires_grad = [p.requires_grad for p in model.parameters()]
    maps: list[np.ndarray] = []
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # gradients flow to the activations only; no parameter .grad
        with torch.inference_mode(False), torch.enable_grad(), _temporary_gradcam(model, layer) as cam:
            # Cloned inside inference_mode(False): a tensor made under inference mode cannot enter autograd.
            x = x.detach().to(device=parameter.device, dtype=parameter.dtype).clone().requires_grad_(True)
            for index in indices:
                heat = cam(x, class_idx=index)  # (1, 1, H, W)
                maps.append(heat.detach().float().cpu().numpy()[0, 0])
                x.grad = None
    finally:
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
        model.train(was_training)
    return _normalise(np.stack(maps))


def gradcam_batch(
    model: nn.Module,
    inputs: torch.Tensor | np.ndarray,
    pairs: Sequence[tuple[int, int]],
    target_layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM maps for several (image index, label index) pairs of one preprocessed batch, batched:
    one forward/backward pass per distinct label over the images that need it (the usual read has one
    or two positive labels over the whole batch), instead of one pass per image and label.

    In eval mode every image's map depends on that image only, so the maps equal ``gradcam_heatmaps``'
    one at a time. Returns float32 (len(pairs), H, W) in [0, 1], in network-input space, in ``pairs`` order.
    """
    x = torch.as_tensor(np.asarray(inputs) if isinstance(inputs, np.ndarray) else inputs)
    if x.ndim != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got {tuple(x.shape)}")
    out = np.zeros((len(pairs),) + tuple(x.shape[-2:]), dtype=np.float32)
    if not pairs:
        return out
    layer = target_layer or guess_cam_target_layer(model)
    parameter = next(model.parameters())
    by_label: dict[int, list[int]] = {}
    for position, (_, label) in enumerate(pairs):
        by_label.setdefault(int(label), []).append(position)
    was_training = model.training
    requires_grad = [p.requires_grad for p in model.parameters()]
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad(), _temporary_gradcam(model, layer) as cam:
            for label, positions in by_label.items():
                images = [int(pairs[position][0]) for position in positions]
                sub = x[images].detach().to(device=parameter.device, dtype=parameter.dtype).clone().requires_grad_(True)
                heat = cam(sub, class_idx=label).detach().float().cpu().numpy()[:, 0]  # (n, H, W)
                out[positions] = heat
    finally:
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
        model.train(was_training)
    return _normalise(out)


def record_heatmaps(
    model: nn.Module,
    record: ImageRecord | np.ndarray,
    label_indices: Sequence[int],
    size: int = DEFAULT_SIZE,
    channels: int = DEFAULT_CHANNELS,
    target_layer: str | None = None,
) -> np.ndarray:
    """Preprocess an image, run Grad-CAM, and return maps (k, rows, cols) on the original image."""
    pixels = record.pixels if isinstance(record, ImageRecord) else np.asarray(record)
    network_input = preprocess_image(pixels, size=size, channels=channels)
    maps = gradcam_heatmaps(model, torch.from_numpy(network_input), label_indices, target_layer)
    return heatmap_to_original(maps, pixels.shape)

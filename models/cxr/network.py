"""Chest X-ray classifiers: DenseNet121 (CheXNet-style) and a small DenseNet for CPU demos.

Networks output one logit per label in ``CXR_LABELS`` order (multi-label: apply a sigmoid, not a
softmax). No pretrained weights are downloaded (the service runs without internet); training
starts from random initialisation or from our own checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from datasets.vocabulary.cxr_labels import NUM_CXR_LABELS

# architecture name → Grad-CAM target layer (the last spatial feature map, post-activation).
CAM_TARGET_LAYERS: dict[str, str] = {
    "densenet121": "class_layers.relu",  # MONAI: after norm5 + ReLU, before global pooling
    "densenet_small": "class_layers.relu",
    "densenet121_torchvision": "relu",  # see TorchvisionDenseNet
}
CXR_ARCHITECTURES: tuple[str, ...] = tuple(CAM_TARGET_LAYERS)

# The small variant: same layer names as DenseNet121 (so the same CAM layer and code paths), ~1 % of
# the parameters, trains in minutes on a laptop CPU at 128 px.
SMALL_DENSENET = {"init_features": 16, "growth_rate": 8, "block_config": (2, 3, 4, 3), "bn_size": 2}


class TorchvisionDenseNet(nn.Module):
    """torchvision's DenseNet with its final ReLU as a named module.

    torchvision applies that ReLU functionally and in place on ``features``' output, which leaves
    Grad-CAM nothing to hook after the activation and breaks a backward hook on ``features.norm5``
    (in-place change of a hooked output). Same parameters and state-dict keys as torchvision's.
    """

    def __init__(self, densenet: nn.Module) -> None:
        super().__init__()
        self.features = densenet.features
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = densenet.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.relu(self.features(x))), 1))


def build_cxr_model(
    architecture: str = "densenet121",
    num_labels: int = NUM_CXR_LABELS,
    in_channels: int = 1,
    dropout_prob: float = 0.0,
    **kwargs,
) -> nn.Module:
    """Build an untrained chest X-ray classifier.

    Args:
        architecture: ``densenet121`` (MONAI DenseNet121, 2-D), ``densenet_small`` (MONAI DenseNet
            with ``SMALL_DENSENET`` settings, for fast demo training) or ``densenet121_torchvision``
            (torchvision's, first convolution adapted to ``in_channels``).
        num_labels: outputs (15 = 14 ChestX-ray14 findings + any abnormality).
        in_channels: 1 (our preprocessing default) or 3.
        kwargs: passed to the MONAI constructor (e.g. ``growth_rate``), overriding the defaults.
    """
    if architecture == "densenet121":
        from monai.networks.nets import DenseNet121  # noqa: PLC0415 - MONAI is heavy; loaded for the architecture asked for

        return DenseNet121(
            spatial_dims=2, in_channels=in_channels, out_channels=num_labels, dropout_prob=dropout_prob, **kwargs
        )
    if architecture == "densenet_small":
        from monai.networks.nets import DenseNet  # noqa: PLC0415 - MONAI is heavy; loaded for the architecture asked for

        settings = {**SMALL_DENSENET, **kwargs}
        return DenseNet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_labels, dropout_prob=dropout_prob, **settings
        )
    if architecture == "densenet121_torchvision":
        from torchvision.models import densenet121  # noqa: PLC0415 - torchvision is optional; loaded for its architecture only

        model = densenet121(weights=None, num_classes=num_labels, drop_rate=dropout_prob, **kwargs)
        if in_channels != 3:
            old = model.features.conv0
            model.features.conv0 = nn.Conv2d(
                in_channels,
                old.out_channels,
                kernel_size=old.kernel_size,
                stride=old.stride,
                padding=old.padding,
                bias=False,
            )
        return TorchvisionDenseNet(model)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(CXR_ARCHITECTURES)}")


def cam_target_layer(architecture: str) -> str:
    """Name of the module Grad-CAM hooks for ``architecture``."""
    try:
        return CAM_TARGET_LAYERS[architecture]
    except KeyError:
        raise ValueError(f"no Grad-CAM layer known for {architecture!r}") from None


def guess_cam_target_layer(model: nn.Module) -> str:
    """The CAM layer for a model built by ``build_cxr_model`` (by its module names)."""
    names = {name for name, _ in model.named_modules()}
    for layer in ("class_layers.relu", "relu"):
        if layer in names:
            return layer
    raise ValueError("cannot tell the Grad-CAM layer of this model; pass target_layer explicitly")


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_probabilities(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Sigmoid probabilities (B, num_labels) for a preprocessed batch, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.sigmoid(model(batch.to(device)))

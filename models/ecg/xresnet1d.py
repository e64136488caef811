"""XResNet1d: the 1-D xresnet of the PTB-XL benchmark (Strodthoff et al., 2021).

Structure (fastai's xresnet, "bag of tricks" variant, adapted to 1-D):
  - a stem of three conv-BN-ReLU layers (the first strided) and a max-pool,
  - stages of residual blocks (basic blocks for expansion 1, bottlenecks for expansion 4),
    whose last BatchNorm starts at zero so each block starts as the identity,
  - a shortcut that average-pools before its 1x1 projection when the block downsamples,
  - a head of concatenated adaptive max + average pooling, BatchNorm, dropout and a linear layer.

The benchmark keeps every stage at the same width (64 for its default stem of 32/32/64) and feeds
100 Hz signals. Here the input is the 500 Hz pipeline output (``datasets.ecg.transforms``); a model
may average-pool it by ``input_pool`` first (5 → the benchmark's 100 Hz), which keeps the network's
receptive field in beats rather than milliseconds and makes small models cheap on CPU.

Every op exports to ONNX (opset 17) with a dynamic batch axis: no data-dependent shapes,
pooling kernels are static, the head flattens with ``flatten(1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBnAct(nn.Sequential):
    """Conv1d (no bias) → BatchNorm1d → optional ReLU, with 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        activation: bool = True,
        zero_init_bn: bool = False,
    ):
        conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
        )
        bn = nn.BatchNorm1d(out_channels)
        # Zero gamma on a residual branch's last BN: the block starts as identity, which lets deep
        # stacks (xresnet1d101) train without warm-up tricks.
        nn.init.constant_(bn.weight, 0.0 if zero_init_bn else 1.0)
        layers: list[nn.Module] = [conv, bn]
        if activation:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock1d(nn.Module):
    """Residual block. ``expansion == 1``: two k-convs; otherwise 1x1 → k-conv → 1x1 bottleneck
    whose output has ``width * expansion`` channels. The stride sits on the k-conv."""

    def __init__(self, expansion: int, in_width: int, width: int, stride: int = 1, kernel_size: int = 5):
        super().__init__()
        in_channels, out_channels = in_width * expansion, width * expansion
        if expansion == 1:
            layers = [
                ConvBnAct(in_channels, width, kernel_size, stride=stride),
                ConvBnAct(width, out_channels, kernel_size, activation=False, zero_init_bn=True),
            ]
        else:
            layers = [
                ConvBnAct(in_channels, width, 1),
                ConvBnAct(width, width, kernel_size, stride=stride),
                ConvBnAct(width, out_channels, 1, activation=False, zero_init_bn=True),
            ]
        self.convs = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if stride != 1:
            # Average-pool then project (xresnet "ResNet-D"): a strided 1x1 conv would drop 3/4 of the
            # samples. ceil_mode keeps the length equal to the strided conv's for odd lengths.
            shortcut.append(nn.AvgPool1d(stride, stride=stride, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(ConvBnAct(in_channels, out_channels, 1, activation=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class AdaptiveConcatPool1d(nn.Module):
    """Global max and average pooling side by side: [B, C, T] → [B, 2C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)


def classifier_head(
    in_channels: int, num_labels: int, hidden: int | None = None, dropout: float = 0.5
) -> nn.Sequential:
    """The benchmark's head: concat pooling → BN → dropout → linear (optionally one hidden layer)."""
    layers: list[nn.Module] = [AdaptiveConcatPool1d()]
    features = 2 * in_channels
    if hidden:
        layers += [
            nn.BatchNorm1d(features),
            nn.Dropout(dropout / 2),
            nn.Linear(features, hidden),
            nn.ReLU(inplace=True),
        ]
        features = hidden
    layers += [nn.BatchNorm1d(features), nn.Dropout(dropout), nn.Linear(features, num_labels)]
    return nn.Sequential(*layers)


def input_pooling(factor: int) -> nn.Module:
    """Average-pool the time axis by ``factor`` (500 Hz → 500/factor Hz). The pipeline already
    low-passed at 45 Hz, so factor 5 (100 Hz) keeps the diagnostic band."""
    return nn.AvgPool1d(factor, stride=factor) if factor > 1 else nn.Identity()


def init_kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class XResNet1d(nn.Module):
    """Multi-label ECG classifier; returns logits [B, num_labels] for input [B, in_channels, T].

    Args:
        layers: residual blocks per stage, e.g. (2, 2, 2, 2) for xresnet1d18, (3, 4, 23, 3) for 101.
        expansion: 1 (basic blocks) or 4 (bottlenecks).
        width: stem width; the stem is (width, width, 2*width) and every stage is 2*width wide
            (the benchmark's default: width 32 → stem 32/32/64, stages 64).
        kernel_size / stem_kernel_size: conv kernels (benchmark: 5 and 5).
        input_pool: average-pooling factor applied to the input first (1 = none).
        head_hidden, head_dropout: see ``classifier_head``.
    """

    def __init__(
        self,
        num_labels: int,
        layers: Sequence[int] = (2, 2, 2, 2),
        expansion: int = 1,
        in_channels: int = 12,
        width: int = 32,
        kernel_size: int = 5,
        stem_kernel_size: int = 5,
        input_pool: int = 1,
        head_hidden: int | None = None,
        head_dropout: float = 0.5,
    ):
        super().__init__()
        if expansion not in (1, 4):
            raise ValueError(f"expansion must be 1 or 4, got {expansion}")
        if kernel_size % 2 == 0 or stem_kernel_size % 2 == 0:
            raise ValueError("kernel sizes must be odd (symmetric 'same' padding)")
        stage_width = 2 * width
        self.input_pool = input_pooling(input_pool)
        self.stem = nn.Sequential(
            ConvBnAct(in_channels, width, stem_kernel_size, stride=2),
            ConvBnAct(width, width, stem_kernel_size),
            ConvBnAct(width, stage_width, stem_kernel_size),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        # The stem's output has stage_width channels; with bottlenecks the first block's "in width"
        # is stage_width // expansion so that in_width * expansion matches it.
        in_width = stage_width // expansion
        stages = []
        for index, n_blocks in enumerate(layers):
            blocks = []
            for block_index in range(n_blocks):
                stride = 2 if (index > 0 and block_index == 0) else 1
                blocks.append(ResBlock1d(expansion, in_width, stage_width, stride=stride, kernel_size=kernel_size))
                in_width = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = classifier_head(stage_width * expansion, num_labels, hidden=head_hidden, dropout=head_dropout)
        init_kaiming(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map [B, C, T'] (for saliency / Grad-CAM style explanations)."""
        return self.stages(self.stem(self.input_pool(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


XRESNET1D_LAYERS: dict[str, tuple[int, tuple[int, ...]]] = {
    # name: (expansion, blocks per stage), as in the benchmark / fastai.
    "xresnet1d18": (1, (2, 2, 2, 2)),
    "xresnet1d34": (1, (3, 4, 6, 3)),
    "xresnet1d50": (4, (3, 4, 6, 3)),
    "xresnet1d101": (4, (3, 4, 23, 3)),
}


def xresnet1d(name: str, num_labels: int, **kwargs) -> XResNet1d:
    """A named configuration (``XRESNET1D_LAYERS``); ``layers``/``expansion`` in kwargs override it."""
    if name not in XRESNET1D_LAYERS:
        raise ValueError(f"unknown xresnet1d variant {name!r}; known: {sorted(XRESNET1D_LAYERS)}")
    expansion, layers = XRESNET1D_LAYERS[name]
    kwargs.setdefault("expansion", expansion)
    kwargs.setdefault("layers", layers)
    return XResNet1d(num_labels, **kwargs)

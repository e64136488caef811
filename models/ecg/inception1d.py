"""Inception1d: the InceptionTime-style network of the PTB-XL benchmark (Strodthoff et al., 2021).

Each inception block runs a 1x1 bottleneck, then parallel convolutions with long kernels
(39, 19 and 9 samples for ``kernel_size=40``) plus a max-pool → 1x1 branch, concatenated and
batch-normalised. Every third block adds a residual shortcut (1x1 conv + BN) from the input of
the group of three. The head is the same concat-pooling head as XResNet1d.

As in XResNet1d, ``input_pool`` average-pools the 500 Hz input first; the benchmark's kernels
were sized for 100 Hz (``input_pool=5``), where 39 samples span 390 ms — about one QRS-T.
"""

from __future__ import annotations

import torch
from torch import nn

from models.ecg.xresnet1d import classifier_head, init_kaiming, input_pooling


def _same_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)


class InceptionBlock1d(nn.Module):
    def __init__(self, in_channels: int, filters: int, kernel_sizes: tuple[int, ...], bottleneck: int = 32):
        super().__init__()
        self.bottleneck = _same_conv(in_channels, bottleneck, 1) if bottleneck > 0 else nn.Identity()
        branch_in = bottleneck if bottleneck > 0 else in_channels
        self.convs = nn.ModuleList([_same_conv(branch_in, filters, k) for k in kernel_sizes])
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _same_conv(in_channels, filters, 1))
        self.bn_act = nn.Sequential(nn.BatchNorm1d((len(kernel_sizes) + 1) * filters), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottled = self.bottleneck(x)
        branches = [conv(bottled) for conv in self.convs] + [self.pool_branch(x)]
        return self.bn_act(torch.cat(branches, dim=1))


class Shortcut1d(nn.Module):
    """out + BN(1x1 conv(residual input)), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _same_conv(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, residual: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.act(out + self.bn(self.conv(residual)))


class Inception1d(nn.Module):
    """Multi-label ECG classifier; returns logits [B, num_labels] for input [B, in_channels, T].

    Args:
        kernel_size: longest kernel (≥ 8); the three branches use kernel_size, //2 and //4,
            each made odd (40 → 39, 19, 9 as in the benchmark).
        depth: inception blocks, a multiple of 3 (a residual shortcut closes every 3).
        filters: output channels per branch (block width = 4 * filters).
        bottleneck: 1x1 bottleneck channels (0 = none).
        input_pool: average-pooling factor applied to the input first (1 = none).
    """

    def __init__(
        self,
        num_labels: int,
        in_channels: int = 12,
        kernel_size: int = 40,
        depth: int = 6,
        filters: int = 32,
        bottleneck: int = 32,
        use_residual: bool = True,
        input_pool: int = 1,
        head_hidden: int | None = None,
        head_dropout: float = 0.5,
    ):
        super().__init__()
        if depth % 3 != 0 or depth <= 0:
            raise ValueError(f"depth must be a positive multiple of 3, got {depth}")
        if kernel_size < 8:
            raise ValueError(f"kernel_size must be >= 8, got {kernel_size}")
        kernel_sizes = tuple(k - 1 if k % 2 == 0 else k for k in (kernel_size, kernel_size // 2, kernel_size // 4))
        width = (len(kernel_sizes) + 1) * filters
        self.kernel_sizes = kernel_sizes
        self.use_residual = use_residual
        self.input_pool = input_pooling(input_pool)
        self.blocks = nn.ModuleList(
            [
                InceptionBlock1d(in_channels if d == 0 else width, filters, kernel_sizes, bottleneck)
                for d in range(depth)
            ]
        )
        self.shortcuts = nn.ModuleList([Shortcut1d(in_channels if g == 0 else width, width) for g in range(depth // 3)])
        self.head = classifier_head(width, num_labels, hidden=head_hidden, dropout=head_dropout)
        init_kaiming(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_pool(x)
        residual = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if self.use_residual and index % 3 == 2:
                x = self.shortcuts[index // 3](residual, x)
                residual = x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

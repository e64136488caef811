"""Build an ECG network by architecture name (what model cards and training configs store)."""

from __future__ import annotations

from torch import nn

from models.card import ModelCard
from models.ecg.inception1d import Inception1d
from models.ecg.xresnet1d import XRESNET1D_LAYERS, xresnet1d

ECG_ARCHITECTURES: tuple[str, ...] = (*XRESNET1D_LAYERS, "inception1d")


def build_ecg_model(architecture: str, num_labels: int, **kwargs) -> nn.Module:
    """A fresh (randomly initialised) network producing ``num_labels`` logits for [B, 12, T] input.

    ``architecture`` is one of ``ECG_ARCHITECTURES``. Keyword arguments go to the network's
    constructor: for XResNet1d e.g. ``width``, ``layers``, ``kernel_size``, ``input_pool``,
    ``head_hidden``, ``head_dropout``; for Inception1d ``filters`` (``width`` is accepted as an
    alias), ``depth``, ``kernel_size``, ``bottleneck``, ``input_pool`` ...
    """
    if architecture in XRESNET1D_LAYERS:
        return xresnet1d(architecture, num_labels, **kwargs)
    if architecture == "inception1d":
        if "width" in kwargs:
            kwargs["filters"] = kwargs.pop("width")
        return Inception1d(num_labels, **kwargs)
    raise ValueError(f"unknown ECG architecture {architecture!r}; known: {', '.join(ECG_ARCHITECTURES)}")


def build_ecg_network(card: ModelCard) -> nn.Module:
    """A fresh network for an ECG model card (weights not loaded)."""
    if card.task != "ecg":
        raise ValueError(f"card is for task {card.task!r}, not 'ecg'")
    return build_ecg_model(card.architecture, len(card.labels), **card.architecture_params)

"""The network a model card describes, built fresh (weights not loaded): the one place that knows
every task's architectures. Backends take a builder instead of importing the tasks
(models/backends.py stays below models/ecg and models/cxr); each pre-reader passes its own task's
builder, and tools that handle any card (export, evaluation) pass ``build_network``."""

from __future__ import annotations

from torch import nn

from models.card import ModelCard
from models.cxr.network import build_cxr_model
from models.ecg.factory import build_ecg_network


def build_network(card: ModelCard) -> nn.Module:
    """A fresh network for ``card``'s task and architecture."""
    if card.task == "ecg":
        return build_ecg_network(card)
    if card.task == "cxr":
        return build_cxr_model(card.architecture, len(card.labels), **card.architecture_params)
    raise ValueError(f"no network builder for task {card.task!r}; register a TorchScript model.pt")

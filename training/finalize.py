"""After the epoch loop, shared by the ECG and CXR trainers: thresholds and the card's metrics of
the best weights (validation, then the test split), and export (state dict, ONNX, TorchScript, each
parity-checked on real validation inputs) + registration with the task's card."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.card import ModelCard
from models.export import export_onnx, export_torchscript, require_parity
from models.registry import ModelRegistry, RegisteredModel
from training.common import state_dict_cpu
from training.config import TrainConfig
from training.metrics import choose_thresholds, macro, operating_points, per_label_auroc
from training.task import FitOutcome
from training.tensors import Predict, to_tensor

log = logging.getLogger(__name__)


def evaluate_best(
    config: TrainConfig,
    outcome: FitOutcome,
    predict: Predict,
    *,
    extra_tail: dict[str, Any] | None = None,
    test_prefix: str = "test_",
    val_probs_hook: Callable[[np.ndarray], dict[str, Any]] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Thresholds (validation) and the card's metrics for the best weights → (thresholds, metrics).
    ``val_probs_hook(val_probs)`` adds metrics right after ``val_auroc``; ``extra_tail`` and the
    outcome's ``card_metrics`` at the end."""
    model, data, device, codes = outcome.model, outcome.data, outcome.device, outcome.data.labels
    early, history = outcome.early, outcome.history
    val_probs = torch.sigmoid(predict(model, to_tensor(data.X_val, device))).numpy()
    thresholds = choose_thresholds(data.Y_val, val_probs, config.threshold_method, codes)
    val_auroc = per_label_auroc(data.Y_val, val_probs, codes)
    metrics: dict[str, Any] = {
        "val_macro_auroc": macro(val_auroc),
        "val_auroc": val_auroc,
        **(val_probs_hook(val_probs) if val_probs_hook is not None else {}),
        "val_operating_points": operating_points(data.Y_val, val_probs, thresholds, codes),
        "best_epoch": (early.best_epoch + 1) if early.best_epoch is not None else None,
        "epochs_run": len(history),
        "early_stopping_metric": config.early_stopping.metric,
        "history": history,
        "train_seconds": round(outcome.train_seconds, 1),
        "device": str(device),
        "threshold_method": config.threshold_method,
        **(extra_tail or {}),
        **outcome.card_metrics,
    }
    if data.X_test is not None:
        test_probs = torch.sigmoid(predict(model, to_tensor(data.X_test, device))).numpy()
        test_auroc = per_label_auroc(data.Y_test, test_probs, codes)
        metrics.update(
            {
                f"{test_prefix}macro_auroc": macro(test_auroc),
                f"{test_prefix}auroc": test_auroc,
                "test_operating_points": operating_points(data.Y_test, test_probs, thresholds, codes),
            }
        )
    return thresholds, metrics


def export_and_register(
    config: TrainConfig,
    registry: ModelRegistry,
    model_cpu: nn.Module,
    X_val: np.ndarray,
    metrics: dict[str, Any],
    make_card: Callable[[dict[str, Any]], ModelCard],
) -> RegisteredModel:
    """Export ``model_cpu`` (state dict, ONNX, TorchScript) with parity checks on validation
    inputs (adding the parity figures to ``metrics``), then register it with
    ``make_card(metrics)`` and set the config's alias."""
    checkpoint_dir = Path(config.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="export-", dir=checkpoint_dir))
    try:
        torch.save(state_dict_cpu(model_cpu), staging / "state_dict.pt")
        parity_inputs = torch.from_numpy(np.ascontiguousarray(X_val[: config.export.parity_samples]))
        example = parity_inputs[:1]
        if config.export.onnx:
            export_onnx(model_cpu, staging / "model.onnx", example)
            metrics["onnx_parity_max_abs_diff"] = require_parity(
                model_cpu, staging / "model.onnx", parity_inputs, tolerance=config.export.parity_tolerance
            )
        if config.export.torchscript:
            export_torchscript(model_cpu, staging / "model.pt", example)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.load(str(staging / "model.pt"))
            with torch.no_grad():
                diff = float(
                    (torch.sigmoid(scripted(parity_inputs)) - torch.sigmoid(model_cpu(parity_inputs))).abs().max()
                )
            if diff > config.export.parity_tolerance:
                raise RuntimeError(f"TorchScript export differs from the trained model by {diff:.3g}")
            metrics["torchscript_parity_max_abs_diff"] = diff
        registered = registry.register(config.registry.name, staging, make_card(metrics))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if config.registry.alias:
        registry.set_alias(registered.name, config.registry.alias, registered.version)
    registered = registry.resolve(registered.ref)
    log.info("registered %s (val macro AUROC %.4f)", registered.ref, metrics["val_macro_auroc"])
    return registered

"""Train, export, check and register a chest X-ray classifier.

``train_cxr(load_train_config("configs/train/cxr-demo.yaml"))`` is the whole demo: the NIH
ChestX-ray14 sample PNGs (../shared/data/cxr/nih) + synthetic chest phantoms → small DenseNet →
ONNX + TorchScript (parity-checked) → model card → registry (``cxr@champion``).

Data (``training.cxr_data``): a real layout (nih, chexpert, medmnist, dicom, worklist), synthetic
chest phantoms, or the NIH sample PNGs + phantoms, every image through the same
``datasets.imaging.preprocess_image`` serving applies, once, when the data are loaded. Only
CARDIOMEGALY / EFFUSION / PNEUMONIA / CONSOLIDATION (+ ANY) have positives in the demo data; the
other ten labels' thresholds stay at 0.5 and their AUROCs are reported as None (undefined).

Augmentation (training batches only, MONAI array transforms): a small random affine (rotation
≤ 5°, scale ± 8 %, shift ≤ 4 %, border padding), contrast (gamma), intensity scale/shift and
Gaussian noise. No flips: a chest radiograph is not left-right symmetric (heart, stomach bubble,
the radiographic convention), and a mirrored film is a mislabelled film, not a plausible input.
Each batch's augmentation is seeded from the run's torch generator, whose state is in the
checkpoint, so a resumed run draws exactly the same augmentations as an uninterrupted one.

Loop: class-weighted BCE (positives of rare labels weighted neg/pos, capped at 50), AdamW with
one-cycle (or cosine), gradient clipping, AMP (bf16/fp16) and channels-last on CUDA only,
a checkpoint after every epoch (exact resume, ``training.common``), early stopping, per-label
thresholds from validation (Youden / F1), ONNX (dynamic batch) + TorchScript export with parity
≤ ``export.parity_tolerance`` on real validation inputs before anything is registered.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.imaging import normalisation_for
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES
from models.card import InputSpec, ModelCard
from models.cxr.network import build_cxr_model
from models.registry import ModelRegistry, RegisteredModel
from training.common import BatchAugment
from training.config import TrainConfig
from training.cxr_data import load_cxr_training_data
from training.data import REAL_DATA_INTENDED_USE, TrainingData
from training.finalize import evaluate_best, export_and_register
from training.heldout import format_report, held_out_report
from training.loop import FitHooks
from training.metrics import json_safe, per_label_auroc
from training.task import FitOutcome, RunPlace, TaskTrainer
from training.tensors import augmenting_inputs, to_device, to_tensor
from training.tensors import predict_logits as _predict_logits

log = logging.getLogger(__name__)

DEMO_CXR_INTENDED_USE = (
    "DEMO model trained on synthetic chest phantoms and a few NIH ChestX-ray14 sample images. Not for clinical use."
)
PREPROCESSING = "datasets.imaging.transforms.cxr_preprocess"
EVAL_BATCH_SIZE = 64


# --------------------------------------------------------------------------------------------
# Validation metrics per origin
# --------------------------------------------------------------------------------------------


def _subset_auroc(data: TrainingData, P: np.ndarray, origin: str) -> dict[str, float | None]:
    mask = data.val_origin == origin
    if not mask.any():
        return {}
    return {k: v for k, v in per_label_auroc(data.Y_val[mask], P[mask], CXR_LABEL_CODES).items() if v is not None}


def _origins(data: TrainingData) -> list[str]:
    """The validation set's origins when it mixes several (NIH samples + phantoms): reported apart."""
    origins = list(dict.fromkeys(data.val_origin)) if data.val_origin is not None else []
    return origins if len(origins) > 1 else []


def _origin_aurocs(data: TrainingData, P: np.ndarray) -> dict[str, dict[str, float | None]]:
    return {f"val_{origin}_auroc": _subset_auroc(data, P, origin) for origin in _origins(data)}


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


class CxrAugment(BatchAugment):
    """MONAI augmentation for preprocessed (normalised, letterboxed) chest images (C, H, W)."""

    def __init__(self, size: int):
        from monai.transforms import (  # noqa: PLC0415 - MONAI is heavy: loaded when a run augments
            Compose,
            RandAdjustContrast,
            RandAffine,
            RandGaussianNoise,
            RandScaleIntensity,
            RandShiftIntensity,
        )

        super().__init__(
            Compose(
                [
                    # Border padding: the letterbox margin is already black and an NIH film's edge is
                    # collimation; zeros would paint mid-gray (0 is the mean after normalisation).
                    RandAffine(
                        prob=0.8,
                        rotate_range=(np.deg2rad(5.0),),
                        scale_range=(0.08, 0.08),
                        translate_range=(0.04 * size, 0.04 * size),
                        padding_mode="border",
                        mode="bilinear",
                    ),
                    RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
                    RandScaleIntensity(factors=0.1, prob=0.5),
                    RandShiftIntensity(offsets=0.1, prob=0.5),
                    RandGaussianNoise(prob=0.3, mean=0.0, std=0.05),
                ]
            )
        )


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    """Logits in batches, channels-last (the layout the network trains in)."""
    return _predict_logits(
        model, X, device, precision, batch_size=EVAL_BATCH_SIZE, channels_last=True, n_labels=len(CXR_LABEL_CODES)
    )


def architecture_params(config: TrainConfig) -> dict[str, Any]:
    """kwargs that rebuild the network with ``build_cxr_model(architecture, n_labels, **params)``."""
    return {"in_channels": config.data.channels, **config.model.params}


def build_network(config: TrainConfig, data: TrainingData) -> nn.Module:
    """The untrained chest X-ray network for the data's labels, per ``config.model``."""
    return build_cxr_model(config.model.architecture, len(data.labels), **architecture_params(config))


def channels_last(model: nn.Module) -> nn.Module:
    """A model restored from a checkpoint, back in the channels-last layout it trains in."""
    return model.to(memory_format=torch.channels_last)


def fit_hooks(config: TrainConfig, data: TrainingData, place: RunPlace) -> FitHooks:
    """Channels-last batches (MONAI-augmented when ``augment.enabled``), the validation AUROCs of each
    origin (NIH samples apart from phantoms) and the real origins' AUROCs in the epoch's summary."""
    device = place.device
    if config.augment.enabled:
        augment = CxrAugment(config.data.image_size)
        batch_inputs = augmenting_inputs(augment, place.generator, device, place.replica, channels_last=True)
    else:

        def batch_inputs(X_train: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return to_device(X_train[index], device, channels_last=True)

    def summary(metrics: dict[str, Any]) -> str:
        return "".join(
            f", {origin.upper()} val AUROC "
            f"{json.dumps({k: round(v, 3) for k, v in metrics[f'val_{origin}_auroc'].items()})}"
            for origin in _origins(data)
            if origin != "phantom"
        )

    return FitHooks(
        predict=lambda m, X: predict_logits(m, X, device, place.precision),
        batch_inputs=batch_inputs,
        extra_val_metrics=lambda probs: _origin_aurocs(data, probs),
        summary_suffix=summary,
        after_resume=channels_last,
    )


# --------------------------------------------------------------------------------------------
# Export and registration
# --------------------------------------------------------------------------------------------


def _pipeline_description(size: int, channels: int) -> dict[str, Any]:
    mean, std = normalisation_for(channels)
    return {
        "size": size,
        "channels": channels,
        "letterbox": True,
        "pad_value": 0.0,
        "mean": list(mean),
        "std": list(std),
        "reader": "datasets.imaging.read_image (DICOM: modality LUT, VOI LUT/window, MONOCHROME1 inverted)",
    }


def cxr_card(
    config: TrainConfig, data: TrainingData, thresholds: dict[str, float], metrics: dict[str, Any]
) -> ModelCard:
    """The model card of a chest X-ray model trained per ``config`` on ``data``."""
    size, channels = config.data.image_size, config.data.channels
    # Phantoms (alone or beside the NIH sample PNGs) make a demo model; real layouts do not, unless
    # the config says so (a small real-data model is still not for clinical use).
    demo = config.demo if config.demo is not None else "phantom" in config.data.source
    return ModelCard(
        name=config.registry.name,
        task="cxr",
        architecture=config.model.architecture,
        architecture_params=architecture_params(config),
        labels=list(data.labels),
        label_names=list(data.label_names),
        thresholds=thresholds,
        input=InputSpec(
            shape=[None, channels, size, size],
            preprocessing=PREPROCESSING,
            preprocessing_params=_pipeline_description(size, channels),
        ),
        training_data=data.for_card(),
        metrics=json_safe(metrics),
        demo=demo,
        learned_from_real=dict(data.learned_from_real),
        intended_use=config.intended_use or (DEMO_CXR_INTENDED_USE if demo else REAL_DATA_INTENDED_USE),
    )


def finalize_cxr(config: TrainConfig, registry: ModelRegistry, outcome: FitOutcome) -> RegisteredModel:
    """Thresholds and metrics of the best weights (a real held-out test set with bootstrap
    intervals), export + parity, card, registration."""
    data, device, precision, model = outcome.data, outcome.device, outcome.precision, outcome.model
    thresholds, metrics = evaluate_best(
        config,
        outcome,
        lambda m, X: predict_logits(m, X, device, precision),
        extra_tail={"data_counts": data.counts},
        test_prefix=f"test_{data.test_origin}_" if data.test_origin == "phantom" else "test_",
        val_probs_hook=lambda probs: _origin_aurocs(data, probs),
    )
    if data.X_test is not None and data.test_origin != "phantom":
        test_probs = torch.sigmoid(predict_logits(model, to_tensor(data.X_test, device), device, precision)).numpy()
        metrics["test_held_out"] = held_out_report(data.Y_test, test_probs, thresholds, data.labels, seed=config.seed)
        log.info(
            "held-out test (%d films, never tuned on):\n%s", len(data.X_test), format_report(metrics["test_held_out"])
        )
    model_cpu = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return export_and_register(
        config, registry, model_cpu, data.X_val, metrics, lambda m: cxr_card(config, data, thresholds, m)
    )


train_cxr = TaskTrainer("cxr", load_cxr_training_data, build_network, fit_hooks, finalize_cxr)

"""Train, export, check and register a chest X-ray classifier.

``train_cxr(load_train_config("configs/train/cxr-demo.yaml"))`` is the whole demo: the NIH
ChestX-ray14 sample PNGs (../shared/data/cxr/nih) + synthetic chest phantoms → small DenseNet →
ONNX + TorchScript (parity-checked) → model card → registry (``cxr@champion``).

Data. Every image, real or phantom, goes through ``datasets.imaging.preprocess_image`` — the same
letterbox + normalisation serving applies — once, when the data are loaded; the network then
trains on those tensors with MONAI augmentation on top:

- NIH samples: ``<folder>/<Finding>/<image>.png`` where ``<Finding>`` is a ChestX-ray14 name
  (``Pneumonia`` → PNEUMONIA + ANY, the other findings unknown and masked out of the loss) or
  ``No_findings`` (all labels negative). They are split into train/validation by *patient* (the
  NIH file name holds the patient number), so no patient is on both sides, and per folder, so
  both classes reach validation.
- Real layouts (``data.format`` nih with Data_Entry_2017.csv, chexpert, medmnist, dicom,
  worklist) are read by ``datasets.sources`` with their own splits (``training.data``).
- Phantoms (``datasets.imaging.random_chest_phantom``): cardiomegaly, effusion, pneumonia and
  consolidation drawn independently; labels CARDIOMEGALY / EFFUSION / PNEUMONIA / CONSOLIDATION
  (+ ANY when any is present).
  The other ten labels have no positives in these data; the network learns to keep them low and
  their thresholds stay at 0.5. Their AUROCs are reported as None (undefined).

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
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.imaging import (
    PHANTOM_FINDINGS,
    normalisation_for,
    preprocess_image,
    random_chest_phantom,
)
from datasets.sources import SourceDataset, open_source
from datasets.sources.nih import folder_codes  # noqa: F401 - kept importable from here
from datasets.sources.splits import split_by_patient
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES, CXR_LABEL_NAMES, codes_from_nih, multi_hot
from models.card import InputSpec, ModelCard
from models.card import TrainingData as CardTrainingData
from models.cxr.network import build_cxr_model
from models.registry import ModelRegistry, RegisteredModel
from training import metrics as _metrics
from training.common import SINGLE_PROCESS, BatchAugment, Replica, prepare_model
from training.config import TrainConfig
from training.data import (
    REAL_DATA_INTENDED_USE,
    TrainingData,
    from_source,
    open_training_source,
    resolve_nih_dir,
    source_options,
)
from training.heldout import format_report, held_out_report
from training.loop import (
    FitOutcome,
    augmenting_inputs,
    evaluate_best,
    export_and_register,
    fit,
    setup_run,
    to_device,
)
from training.loop import batches as _batches  # noqa: F401 - kept importable from here
from training.loop import config_hash as _config_hash  # noqa: F401
from training.loop import predict_logits as _predict_logits
from training.loop import split as _split
from training.loop import to_tensor as _to_tensor
from training.metrics import THRESHOLD_RANGE, macro  # noqa: F401 - re-exported
from training.metrics import json_safe as _json_safe

log = logging.getLogger(__name__)

DEMO_CXR_INTENDED_USE = (
    "DEMO model trained on synthetic chest phantoms and a few NIH ChestX-ray14 sample images. Not for clinical use."
)
PREPROCESSING = "datasets.imaging.transforms.cxr_preprocess"
TEST_SEED_OFFSET = 1_000_000  # phantom held-out test set: seed + this, never the training stream
HOLDOUT_SEED_OFFSET = 7_919  # the held-out test patients: another stream than the validation draw
EVAL_BATCH_SIZE = 64


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

CxrTrainingData = TrainingData  # kept importable under its old name


def make_phantoms(
    n: int, seed: int, phantom_size: int, size: int, channels: int, prevalence: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random chest phantoms through THE preprocessing, with their multi-hot targets."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, channels, size, size), dtype=np.float32)
    Y = np.zeros((n, len(CXR_LABEL_CODES)), dtype=np.float32)
    for index in range(n):
        phantom = random_chest_phantom(phantom_size, seed=rng, prevalence=prevalence)
        X[index] = preprocess_image(phantom.pixels, size=size, channels=channels)
        Y[index] = multi_hot(codes_from_nih(phantom.finding_labels))
    return X, Y


def hold_out_patients(
    dataset: SourceDataset, fraction: float, seed: int, also: set[str] = frozenset()
) -> SourceDataset:
    """Mark about ``fraction`` of each stratum's patients (seeded) — and every patient in ``also`` —
    as the ``test`` split, before validation is drawn from the rest."""
    groups = [str(g) for g in dataset.meta["patient_id"]]
    test = set()
    if fraction > 0:
        strata = (
            [str(s) for s in dataset.meta["stratum"]] if "stratum" in dataset.meta.columns else ["all"] * len(groups)
        )
        _, test_index = split_by_patient(groups, strata, fraction, seed + HOLDOUT_SEED_OFFSET)
        test = {int(i) for i in test_index}
    test |= {i for i, g in enumerate(groups) if g in also}
    meta = dataset.meta.copy()
    meta.loc[sorted(test), "split"] = "test"
    return replace(dataset, meta=meta)


def load_nih_with_holdout(config: TrainConfig, progress: bool = False) -> TrainingData:
    """NIH class folders split once by the config's seed into train / validation / held-out test:
    ``data.test_fraction`` of each class's patients, plus every film of ``data.test_path``."""
    data = config.data
    dataset = open_training_source(config)
    extra = None
    if data.test_path is not None:
        extra = open_source("nih", resolve_nih_dir(data.test_path), **source_options(config))
    also = set(extra.meta["patient_id"].astype(str)) if extra is not None else set()
    real = from_source(hold_out_patients(dataset, data.test_fraction, data.seed, also), config, progress=progress)
    if extra is None:
        return real
    X_extra, extra = extra.load_inputs(progress=progress, cache_dir=data.cache_dir)
    parts = [(real.X_test, real.Y_test)] if real.X_test is not None else []
    parts.append((X_extra, extra.Y))
    real.X_test = np.concatenate([x for x, _ in parts])
    real.Y_test = np.concatenate([y for _, y in parts])
    real.split_ids["test"] = real.split_ids.get("test", []) + extra.ids
    real.counts[f"{extra.format}_test"] = len(real.X_test)
    real.test_origin = real.test_origin or extra.format
    real.description += f"; held-out test also holds all {len(extra)} films of {extra.path}"
    return real


def load_cxr_training_data(config: TrainConfig, progress: bool = False) -> TrainingData:
    """A real layout (nih, chexpert, medmnist, dicom, worklist), phantoms, or NIH samples + phantoms.

    Phantoms only teach findings the real films hold no example of: a phantom's label for a finding
    the real data do have (PNEUMONIA, ANY from the NIH folders) is masked out of the loss."""
    data = config.data
    size, channels = data.image_size, data.channels
    real = None
    if data.source == "nih" and (data.test_fraction or data.test_path):
        return load_nih_with_holdout(config, progress)
    if data.source != "phantom":
        real = from_source(open_training_source(config), config, progress=progress)
        if data.source != "nih+phantom":
            return real
    X, Y = make_phantoms(data.n, data.seed, data.phantom_size, size, channels, data.phantom_prevalence)
    real_labels = [i for i, code in enumerate(CXR_LABEL_CODES) if real is not None and real.learned_from_real.get(code)]
    Y[:, real_labels] = np.nan
    train_index, val_index = _split(len(X), data.val_fraction, data.seed)
    X_test = Y_test = None
    if data.test_n:
        X_test, Y_test = make_phantoms(
            data.test_n, data.seed + TEST_SEED_OFFSET, data.phantom_size, size, channels, data.phantom_prevalence
        )
    phantom_description = (
        f"{data.n} synthetic chest phantoms ({', '.join(PHANTOM_FINDINGS)}; prevalence "
        f"{data.phantom_prevalence:g} each, {data.phantom_size} px, seed {data.seed})"
    )
    phantoms = TrainingData(
        X_train=X[train_index],
        Y_train=Y[train_index],
        X_val=X[val_index],
        Y_val=Y[val_index],
        X_test=X_test,
        Y_test=Y_test,
        description=phantom_description,
        source=data.source,
        labels=list(CXR_LABEL_CODES),
        label_names=list(CXR_LABEL_NAMES),
        val_origin=np.full(len(val_index), "phantom"),
        test_origin="phantom" if X_test is not None else None,
        counts={"phantom_train": len(train_index), "phantom_val": len(val_index)},
    )
    parts = [p for p in (real, phantoms) if p is not None]
    # A real test split wins over the phantom one (the card reports one test set).
    test = next((p for p in parts if p.X_test is not None), None)
    return TrainingData(
        X_train=np.concatenate([p.X_train for p in parts]),
        Y_train=np.concatenate([p.Y_train for p in parts]),
        X_val=np.concatenate([p.X_val for p in parts]),
        Y_val=np.concatenate([p.Y_val for p in parts]),
        X_test=test.X_test if test else None,
        Y_test=test.Y_test if test else None,
        description="; ".join(p.description for p in parts) + f"; input {size} px letterboxed",
        source=data.source,
        labels=list(CXR_LABEL_CODES),
        label_names=list(CXR_LABEL_NAMES),
        val_origin=np.concatenate([p.val_origin for p in parts]),
        test_origin=test.test_origin if test else None,
        counts={k: v for p in parts for k, v in p.counts.items()},
        notes=[n for p in parts for n in p.notes],
        split_ids=real.split_ids if real is not None else {},
        learned_from_real={
            code: bool(real is not None and real.learned_from_real.get(code)) for code in CXR_LABEL_CODES
        },
    )


# --------------------------------------------------------------------------------------------
# Metrics and thresholds
# --------------------------------------------------------------------------------------------


def per_label_auroc(Y: np.ndarray, P: np.ndarray, codes=CXR_LABEL_CODES) -> dict[str, float | None]:
    """AUROC per label code; None where the data hold only one class for a label."""
    return _metrics.per_label_auroc(Y, P, codes)


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes=CXR_LABEL_CODES) -> dict[str, float]:
    """Per-label thresholds on validation data: Youden's J or max F1; 0.5 for 'fixed' and for
    labels with a single class (``training.metrics.choose_thresholds``)."""
    return _metrics.choose_thresholds(Y, P, method, codes)


def operating_points(
    Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float], codes=CXR_LABEL_CODES
) -> dict[str, dict[str, float | None]]:
    return _metrics.operating_points(Y, P, thresholds, codes)


def _subset_auroc(data: TrainingData, P: np.ndarray, origin: str) -> dict[str, float | None]:
    mask = data.val_origin == origin
    if not mask.any():
        return {}
    return {k: v for k, v in per_label_auroc(data.Y_val[mask], P[mask]).items() if v is not None}


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
        from monai.transforms import (  # noqa: PLC0415
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
# Loop
# --------------------------------------------------------------------------------------------


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    return to_device(batch, device, channels_last=True)


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    return _predict_logits(
        model, X, device, precision, batch_size=EVAL_BATCH_SIZE, channels_last=True, n_labels=len(CXR_LABEL_CODES)
    )


def architecture_params(config: TrainConfig) -> dict[str, Any]:
    """kwargs that rebuild the network with ``build_cxr_model(architecture, n_labels, **params)``."""
    return {"in_channels": config.data.channels, **config.model.params}


def fit_cxr(
    config: TrainConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    replica: Replica = SINGLE_PROCESS,
    checkpoints: Any = None,
) -> FitOutcome:
    """Load the data and train (no export): the part every rank of a distributed run does."""
    started = time.perf_counter()
    generator, device, precision = setup_run(config, "cxr", replica)
    data = load_cxr_training_data(config, progress=progress and replica.is_main)
    log.info(
        "CXR training on %s (AMP %s, rank %d/%d): %d train / %d val images (%s)",
        device,
        precision.enabled,
        replica.rank,
        replica.world_size,
        len(data.X_train),
        len(data.X_val),
        data.counts,
    )

    model = prepare_model(
        build_cxr_model(config.model.architecture, len(data.labels), **architecture_params(config)), device
    )
    if config.augment.enabled:
        batch_inputs = augmenting_inputs(
            CxrAugment(config.data.image_size), generator, device, replica, channels_last=True
        )
    else:

        def batch_inputs(X_train: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return _to_device(X_train[index], device)

    def channels_last(model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last)

    def summary(metrics: dict[str, Any]) -> str:
        return "".join(
            f", {origin.upper()} val AUROC "
            f"{json.dumps({k: round(v, 3) for k, v in metrics[f'val_{origin}_auroc'].items()})}"
            for origin in _origins(data)
            if origin != "phantom"
        )

    stats: dict[str, Any] = {}
    model, history, early = fit(
        config,
        model,
        data,
        codes=data.labels,
        device=device,
        precision=precision,
        generator=generator,
        progress=progress,
        resume=resume,
        on_epoch_end=on_epoch_end,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        batch_inputs=batch_inputs,
        extra_val_metrics=lambda probs: _origin_aurocs(data, probs),
        summary_suffix=summary,
        after_resume=channels_last,
        replica=replica,
        checkpoints=checkpoints,
        stats=stats,
    )
    return FitOutcome(model, data, history, early, device, precision, time.perf_counter() - started, stats)


def train_cxr(
    config: TrainConfig,
    registry: ModelRegistry | None = None,
    progress: bool = True,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> RegisteredModel:
    """Train per ``config``, export, check ONNX parity, write the card and register the model.

    Args:
        registry: where to register (default: ``config.registry.root`` or the default registry).
        progress: tqdm bars for data loading and epochs.
        resume: continue from ``checkpoint_dir/last.pt`` if it belongs to this config; a finished
            run goes straight to export/registration.
        on_epoch_end: called with (epoch, metrics) after each epoch's checkpoint is written.

    Returns the registered version, with the config's alias set. (Several workers:
    ``training.distributed.train``.)
    """
    registry = registry or ModelRegistry(config.registry.root)
    outcome = fit_cxr(config, progress=progress, resume=resume, on_epoch_end=on_epoch_end)
    return finalize_cxr(config, registry, outcome)


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


def finalize_cxr(config: TrainConfig, registry: ModelRegistry, outcome: FitOutcome) -> RegisteredModel:
    """Thresholds and metrics of the best weights, export + parity, card, registration."""
    data, device, precision, model = outcome.data, outcome.device, outcome.precision, outcome.model
    thresholds, metrics = evaluate_best(
        config,
        model,
        data,
        codes=data.labels,
        device=device,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        history=outcome.history,
        early=outcome.early,
        train_seconds=outcome.train_seconds,
        test_prefix=f"test_{data.test_origin}_" if data.test_origin == "phantom" else "test_",
        val_probs_hook=lambda probs: _origin_aurocs(data, probs),
        extra_tail={"data_counts": data.counts, **outcome.card_metrics},
    )
    if data.X_test is not None and data.test_origin != "phantom":
        test_probs = torch.sigmoid(predict_logits(model, _to_tensor(data.X_test, device), device, precision)).numpy()
        metrics["test_held_out"] = held_out_report(data.Y_test, test_probs, thresholds, data.labels, seed=config.seed)
        log.info(
            "held-out test (%d films, never tuned on):\n%s", len(data.X_test), format_report(metrics["test_held_out"])
        )
    size, channels = config.data.image_size, config.data.channels
    # Phantoms (alone or beside the NIH sample PNGs) make a demo model; real layouts do not, unless
    # the config says so (a small real-data model is still not for clinical use).
    demo = config.demo if config.demo is not None else "phantom" in config.data.source

    def make_card(metrics: dict[str, Any]) -> ModelCard:
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
            training_data=CardTrainingData(
                description=data.description,
                source=data.source,
                n_train=len(data.X_train),
                n_val=len(data.X_val),
                n_test=len(data.X_test) if data.X_test is not None else None,
                fingerprint_sha256=data.fingerprint(),
            ),
            metrics=_json_safe(metrics),
            demo=demo,
            learned_from_real=dict(data.learned_from_real),
            intended_use=config.intended_use or (DEMO_CXR_INTENDED_USE if demo else REAL_DATA_INTENDED_USE),
        )

    model_cpu = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return export_and_register(config, registry, model_cpu, data.X_val, metrics, make_card)

"""Train, export, check and register a chest X-ray classifier.

``train_cxr(load_train_config("configs/train/cxr-demo.yaml"))`` is the whole demo: the NIH
ChestX-ray14 sample PNGs (../shared/data/cxr/nih) + synthetic chest phantoms → small DenseNet →
ONNX + TorchScript (parity-checked) → model card → registry (``cxr@champion``).

Data. Every image, real or phantom, goes through ``datasets.imaging.preprocess_image`` — the same
letterbox + normalisation serving applies — once, when the data are loaded; the network then
trains on those tensors with MONAI augmentation on top:

- NIH samples: ``<folder>/<Finding>/<image>.png`` where ``<Finding>`` is a ChestX-ray14 name
  (``Pneumonia`` → PNEUMONIA + ANY) or ``No_findings`` (all labels negative). They are split
  into train/validation by *patient* (the NIH file name holds the patient number), so no
  patient is on both sides, and per folder, so both classes reach validation.
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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from datasets.imaging import (
    PHANTOM_FINDINGS,
    nih_patient_id,
    normalisation_for,
    preprocess_image,
    random_chest_phantom,
    read_image_file,
)
from models.card import InputSpec, ModelCard, TrainingData, fingerprint_arrays
from models.cxr.labels import CXR_LABEL_CODES, CXR_LABELS, codes_from_nih, multi_hot
from models.cxr.network import build_cxr_model
from models.registry import ModelRegistry, RegisteredModel
from training import metrics as _metrics
from training.common import EarlyStopping, prepare_model, seed_everything, select_device, select_precision
from training.config import TrainConfig
from training.loop import batches as _batches  # noqa: F401 - kept importable from here
from training.loop import config_hash as _config_hash  # noqa: F401
from training.loop import evaluate_best, export_and_register, fit
from training.loop import predict_logits as _predict_logits
from training.loop import split as _split
from training.loop import to_device
from training.loop import to_tensor as _to_tensor  # noqa: F401
from training.metrics import THRESHOLD_RANGE, macro  # noqa: F401 - re-exported
from training.metrics import json_safe as _json_safe

log = logging.getLogger(__name__)

DEMO_CXR_INTENDED_USE = ("DEMO model trained on synthetic chest phantoms and a few NIH ChestX-ray14 sample images. "
                         "Not for clinical use.")
PREPROCESSING = "datasets.imaging.transforms.cxr_preprocess"
SHARED_DATA_ENV = "PREREAD_SHARED_DATA"
NORMAL_FOLDERS = ("no_finding", "no_findings", "normal")
TEST_SEED_OFFSET = 1_000_000  # phantom held-out test set: seed + this, never the training stream
EVAL_BATCH_SIZE = 64
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def resolve_nih_dir(path: str | Path | None = None) -> Path:
    """The NIH sample folder: ``path`` if given, else ``$PREREAD_SHARED_DATA/cxr/nih``, else
    ``../shared/data/cxr/nih`` beside the repository."""
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = []
        if os.environ.get(SHARED_DATA_ENV):
            candidates.append(Path(os.environ[SHARED_DATA_ENV]) / "cxr" / "nih")
        candidates.append(REPO.parent / "shared" / "data" / "cxr" / "nih")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"NIH chest X-ray samples not found (tried {tried}); set data.path or ${SHARED_DATA_ENV}")


def folder_codes(name: str) -> list[str]:
    """Label codes of an NIH class folder: ``No_findings`` → [], ``Pneumonia`` → [PNEUMONIA, ANY],
    ``Cardiomegaly|Effusion`` → both + ANY. Unknown names raise ValueError."""
    if name.lower() in NORMAL_FOLDERS:
        return []
    return codes_from_nih(name)


@dataclass
class NihImages:
    X: np.ndarray                     # [n, C, size, size] preprocessed
    Y: np.ndarray                     # [n, L]
    ids: list[str]                    # "<folder>/<file>"
    groups: list[str]                 # patient ids (split unit)
    folders: list[str]                # class folder per image (stratum)


def load_nih_folder(folder: str | Path, size: int, channels: int, limit: int | None = None,
                    progress: bool = False) -> NihImages:
    """``folder/<Finding>/*.png`` → preprocessed tensors and multi-hot targets."""
    folder = Path(folder)
    paths = sorted(p for sub in sorted(folder.iterdir()) if sub.is_dir()
                   for p in sorted(sub.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if limit is not None and len(paths) > limit:
        # Keep the classes balanced when capping: take images round-robin over the folders.
        by_folder: dict[str, list[Path]] = {}
        for p in paths:
            by_folder.setdefault(p.parent.name, []).append(p)
        picked: list[Path] = []
        while len(picked) < limit:
            for items in by_folder.values():
                if items and len(picked) < limit:
                    picked.append(items.pop(0))
        paths = sorted(picked)
    if not paths:
        raise FileNotFoundError(f"no PNG/JPEG images under {folder}/<Finding>/")
    X, Y, ids, groups, folders = [], [], [], [], []
    for path in tqdm(paths, desc="NIH images", disable=not progress, unit="img"):
        X.append(preprocess_image(read_image_file(path), size=size, channels=channels))
        Y.append(multi_hot(folder_codes(path.parent.name)))
        ids.append(f"{path.parent.name}/{path.name}")
        groups.append(nih_patient_id(path) or path.stem)
        folders.append(path.parent.name)
    return NihImages(np.stack(X).astype(np.float32), np.stack(Y), ids, groups, folders)


def make_phantoms(n: int, seed: int, phantom_size: int, size: int, channels: int,
                  prevalence: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random chest phantoms through THE preprocessing, with their multi-hot targets."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, channels, size, size), dtype=np.float32)
    Y = np.zeros((n, len(CXR_LABEL_CODES)), dtype=np.float32)
    for index in range(n):
        phantom = random_chest_phantom(phantom_size, seed=rng, prevalence=prevalence)
        X[index] = preprocess_image(phantom.pixels, size=size, channels=channels)
        Y[index] = multi_hot(codes_from_nih(phantom.finding_labels))
    return X, Y


def split_by_patient(groups: list[str], strata: list[str], val_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices: whole patients go to one side; each stratum (class folder)
    contributes about ``val_fraction`` of its images (at least one patient) to validation."""
    rng = np.random.default_rng([seed, 11])
    val: list[int] = []
    for stratum in sorted(set(strata)):
        members = [i for i, s in enumerate(strata) if s == stratum]
        patients = sorted({groups[i] for i in members})
        if len(patients) < 2:
            continue
        rng.shuffle(patients)
        target = max(1, int(round(len(members) * val_fraction)))
        chosen: list[int] = []
        for patient in patients[:-1]:  # always leave one patient for training
            if len(chosen) >= target:
                break
            chosen += [i for i in members if groups[i] == patient]
        val += chosen
    val_index = np.array(sorted(set(val)), dtype=np.int64)
    train_index = np.array(sorted(set(range(len(groups))) - set(val)), dtype=np.int64)
    return train_index, val_index


@dataclass
class CxrTrainingData:
    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    val_origin: np.ndarray           # "nih" / "phantom" per validation image
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    description: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return fingerprint_arrays(self.X_train, self.Y_train)


def load_cxr_training_data(config: TrainConfig, progress: bool = False) -> CxrTrainingData:
    data = config.data
    size, channels = data.image_size, data.channels
    parts_train: list[tuple[np.ndarray, np.ndarray, str]] = []
    parts_val: list[tuple[np.ndarray, np.ndarray, str]] = []
    descriptions, counts = [], {}
    X_test = Y_test = None
    if "nih" in data.source:
        folder = resolve_nih_dir(data.path)
        nih = load_nih_folder(folder, size, channels, limit=data.n if data.source == "nih" else None,
                              progress=progress)
        train_index, val_index = split_by_patient(nih.groups, nih.folders, data.val_fraction, data.seed)
        parts_train.append((nih.X[train_index], nih.Y[train_index], "nih"))
        parts_val.append((nih.X[val_index], nih.Y[val_index], "nih"))
        folders = sorted(set(nih.folders))
        descriptions.append(f"{len(nih.X)} NIH ChestX-ray14 sample PNGs ({', '.join(folders)}; "
                            f"split by patient: {len(train_index)} train / {len(val_index)} val)")
        counts.update(nih_train=len(train_index), nih_val=len(val_index))
    if "phantom" in data.source:
        X, Y = make_phantoms(data.n, data.seed, data.phantom_size, size, channels, data.phantom_prevalence)
        train_index, val_index = _split(len(X), data.val_fraction, data.seed)
        parts_train.append((X[train_index], Y[train_index], "phantom"))
        parts_val.append((X[val_index], Y[val_index], "phantom"))
        if data.test_n:
            X_test, Y_test = make_phantoms(data.test_n, data.seed + TEST_SEED_OFFSET, data.phantom_size, size,
                                           channels, data.phantom_prevalence)
        descriptions.append(f"{data.n} synthetic chest phantoms ({', '.join(PHANTOM_FINDINGS)}; "
                            f"prevalence {data.phantom_prevalence:g} each, {data.phantom_size} px, seed {data.seed})")
        counts.update(phantom_train=len(train_index), phantom_val=len(val_index))
    n_train, n_val = sum(len(p[0]) for p in parts_train), sum(len(p[0]) for p in parts_val)
    if n_train < 2 or n_val < 1:
        raise ValueError(f"{data.source}: {n_train} training / {n_val} validation images; need at least 2 / 1 "
                         "(more images, more patients, or another val_fraction)")
    return CxrTrainingData(
        X_train=np.concatenate([p[0] for p in parts_train]), Y_train=np.concatenate([p[1] for p in parts_train]),
        X_val=np.concatenate([p[0] for p in parts_val]), Y_val=np.concatenate([p[1] for p in parts_val]),
        val_origin=np.concatenate([np.full(len(p[0]), p[2]) for p in parts_val]),
        X_test=X_test, Y_test=Y_test, description="; ".join(descriptions) + f"; input {size} px letterboxed",
        source=data.source, counts=counts,
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


def operating_points(Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float],
                     codes=CXR_LABEL_CODES) -> dict[str, dict[str, float | None]]:
    return _metrics.operating_points(Y, P, thresholds, codes)


def _subset_auroc(data: CxrTrainingData, P: np.ndarray, origin: str) -> dict[str, float | None]:
    mask = data.val_origin == origin
    if not mask.any():
        return {}
    return {k: v for k, v in per_label_auroc(data.Y_val[mask], P[mask]).items() if v is not None}


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------

class CxrAugment:
    """MONAI augmentation for preprocessed (normalised, letterboxed) chest images (C, H, W)."""

    def __init__(self, size: int):
        from monai.transforms import (
            Compose,
            RandAdjustContrast,
            RandAffine,
            RandGaussianNoise,
            RandScaleIntensity,
            RandShiftIntensity,
        )

        self.transform = Compose([
            # Border padding: the letterbox margin is already black and an NIH film's edge is
            # collimation; zeros would paint mid-gray (0 is the mean after normalisation).
            RandAffine(prob=0.8, rotate_range=(np.deg2rad(5.0),), scale_range=(0.08, 0.08),
                       translate_range=(0.04 * size, 0.04 * size), padding_mode="border", mode="bilinear"),
            RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
            RandScaleIntensity(factors=0.1, prob=0.5),
            RandShiftIntensity(offsets=0.1, prob=0.5),
            RandGaussianNoise(prob=0.3, mean=0.0, std=0.05),
        ])

    def __call__(self, batch: torch.Tensor, seed: int) -> torch.Tensor:
        self.transform.set_random_state(seed=int(seed))
        out = [self.transform(image) for image in batch]
        return torch.stack([x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x) for x in out]).to(
            batch.dtype)


# --------------------------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------------------------

def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    return to_device(batch, device, channels_last=True)


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    return _predict_logits(model, X, device, precision, batch_size=EVAL_BATCH_SIZE, channels_last=True,
                           n_labels=len(CXR_LABEL_CODES))


def architecture_params(config: TrainConfig) -> dict[str, Any]:
    """kwargs that rebuild the network with ``build_cxr_model(architecture, n_labels, **params)``."""
    return {"in_channels": config.data.channels, **config.model.params}


def train_cxr(config: TrainConfig, registry: ModelRegistry | None = None, progress: bool = True,
              resume: bool = False, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> RegisteredModel:
    """Train per ``config``, export, check ONNX parity, write the card and register the model.

    Args:
        registry: where to register (default: ``config.registry.root`` or the default registry).
        progress: tqdm bars for data loading and epochs.
        resume: continue from ``checkpoint_dir/last.pt`` if it belongs to this config; a finished
            run goes straight to export/registration.
        on_epoch_end: called with (epoch, metrics) after each epoch's checkpoint is written.

    Returns the registered version, with the config's alias set.
    """
    if config.task != "cxr":
        raise ValueError(f"train_cxr got a {config.task!r} config")
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    registry = registry or ModelRegistry(config.registry.root)
    generator = seed_everything(config.seed)
    device = select_device(config.device)
    precision = select_precision(device)
    data = load_cxr_training_data(config, progress=progress)
    n_labels = len(CXR_LABEL_CODES)
    log.info("CXR training on %s (AMP %s): %d train / %d val images (%s)", device, precision.enabled,
             len(data.X_train), len(data.X_val), data.counts)

    model = prepare_model(build_cxr_model(config.model.architecture, n_labels, **architecture_params(config)), device)
    augment = CxrAugment(config.data.image_size)

    def batch_inputs(X_train: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # Each batch's augmentation is seeded from the run's generator (its state is checkpointed).
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return _to_device(augment(X_train[index], seed), device)

    def channels_last(model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model

    model, history, early = fit(
        config, model, data, codes=CXR_LABEL_CODES, device=device, precision=precision, generator=generator,
        progress=progress, resume=resume, on_epoch_end=on_epoch_end,
        predict=lambda m, X: predict_logits(m, X, device, precision), batch_inputs=batch_inputs,
        extra_val_metrics=lambda probs: {"val_nih_auroc": _subset_auroc(data, probs, "nih")},
        summary_suffix=lambda metrics: (", NIH val AUROC "
                                        f"{json.dumps({k: round(v, 3) for k, v in metrics['val_nih_auroc'].items()})}"),
        after_resume=channels_last)
    train_seconds = time.perf_counter() - started
    return _finalize(config, registry, model, data, device, precision, history, early, train_seconds)


def _pipeline_description(size: int, channels: int) -> dict[str, Any]:
    mean, std = normalisation_for(channels)
    return {"size": size, "channels": channels, "letterbox": True, "pad_value": 0.0,
            "mean": list(mean), "std": list(std),
            "reader": "datasets.imaging.read_image (DICOM: modality LUT, VOI LUT/window, MONOCHROME1 inverted)"}


def _finalize(config: TrainConfig, registry: ModelRegistry, model: nn.Module, data: CxrTrainingData,
              device: torch.device, precision, history: list[dict], early: EarlyStopping,
              train_seconds: float) -> RegisteredModel:
    """Thresholds and metrics of the best weights, export + parity, card, registration."""
    thresholds, metrics = evaluate_best(
        config, model, data, codes=CXR_LABEL_CODES, device=device,
        predict=lambda m, X: predict_logits(m, X, device, precision),
        history=history, early=early, train_seconds=train_seconds, test_prefix="test_phantom_",
        val_probs_hook=lambda probs: {"val_nih_auroc": _subset_auroc(data, probs, "nih"),
                                      "val_phantom_auroc": _subset_auroc(data, probs, "phantom")},
        extra_tail={"data_counts": data.counts})
    size, channels = config.data.image_size, config.data.channels
    # Every source this trainer knows (phantoms, the NIH sample PNGs) makes a demo model.
    demo = True

    def make_card(metrics: dict[str, Any]) -> ModelCard:
        return ModelCard(
            name=config.registry.name,
            task="cxr",
            architecture=config.model.architecture,
            architecture_params=architecture_params(config),
            labels=list(CXR_LABEL_CODES),
            label_names=[label.name for label in CXR_LABELS],
            thresholds=thresholds,
            input=InputSpec(shape=[None, channels, size, size], preprocessing=PREPROCESSING,
                            preprocessing_params=_pipeline_description(size, channels)),
            training_data=TrainingData(description=data.description, source=data.source,
                                       n_train=len(data.X_train), n_val=len(data.X_val),
                                       n_test=len(data.X_test) if data.X_test is not None else None,
                                       fingerprint_sha256=data.fingerprint()),
            metrics=_json_safe(metrics),
            demo=demo,
            intended_use=config.intended_use or DEMO_CXR_INTENDED_USE,
        )

    model_cpu = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return export_and_register(config, registry, model_cpu, data.X_val, metrics, make_card)

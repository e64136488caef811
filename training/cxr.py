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

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
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
from models.export import export_onnx, export_torchscript, require_parity
from models.registry import ModelRegistry, RegisteredModel
from training.common import (
    CHECKPOINT_FILENAME,
    EarlyStopping,
    load_checkpoint,
    prepare_model,
    save_checkpoint,
    seed_everything,
    select_device,
    select_precision,
    state_dict_cpu,
)
from training.config import TrainConfig

log = logging.getLogger(__name__)

DEMO_CXR_INTENDED_USE = ("DEMO model trained on synthetic chest phantoms and a few NIH ChestX-ray14 sample images. "
                         "Not for clinical use.")
PREPROCESSING = "datasets.imaging.transforms.cxr_preprocess"
SHARED_DATA_ENV = "PREREAD_SHARED_DATA"
NORMAL_FOLDERS = ("no_finding", "no_findings", "normal")
TEST_SEED_OFFSET = 1_000_000  # phantom held-out test set: seed + this, never the training stream
EVAL_BATCH_SIZE = 64
THRESHOLD_RANGE = (0.05, 0.95)
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


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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
    from sklearn.metrics import roc_auc_score

    out: dict[str, float | None] = {}
    for index, code in enumerate(codes):
        y = Y[:, index]
        out[code] = float(roc_auc_score(y, P[:, index])) if 0 < y.sum() < len(y) else None
    return out


def macro(values: dict[str, float | None]) -> float:
    present = [v for v in values.values() if v is not None]
    return float(np.mean(present)) if present else float("nan")


def choose_thresholds(Y: np.ndarray, P: np.ndarray, method: str, codes=CXR_LABEL_CODES) -> dict[str, float]:
    """Per-label thresholds on validation data: Youden's J or max F1; 0.5 for 'fixed' and for
    labels with a single class. Same rule as ``training.ecg.choose_thresholds`` (midpoint cut,
    ties to the cut nearest 0.5, clipped to THRESHOLD_RANGE), over any label list."""
    thresholds: dict[str, float] = {}
    for index, code in enumerate(codes):
        y, p = Y[:, index] > 0.5, P[:, index].astype(np.float64)
        positives = int(y.sum())
        if method == "fixed" or not 0 < positives < len(y):
            thresholds[code] = 0.5
            continue
        order = np.argsort(-p, kind="stable")
        scores, truth = p[order], y[order]
        ends = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
        tp = np.cumsum(truth)[ends].astype(np.float64)
        fp = np.cumsum(~truth)[ends].astype(np.float64)
        if method == "youden":
            objective = tp / positives - fp / (len(y) - positives)
        else:
            objective = 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1e-12)
        next_lower = np.r_[scores[ends[:-1] + 1], 0.0]
        cuts = (scores[ends] + next_lower) / 2
        tied = np.flatnonzero(objective >= objective.max() - 1e-12)
        best = tied[np.argmin(np.abs(cuts[tied] - 0.5))]
        thresholds[code] = float(np.clip(cuts[best], *THRESHOLD_RANGE))
    return thresholds


def operating_points(Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float],
                     codes=CXR_LABEL_CODES) -> dict[str, dict[str, float | None]]:
    out = {}
    for index, code in enumerate(codes):
        y, predicted = Y[:, index] > 0.5, P[:, index] >= thresholds[code]
        positives, negatives = y.sum(), (~y).sum()
        out[code] = {
            "sensitivity": float((predicted & y).sum() / positives) if positives else None,
            "specificity": float((~predicted & ~y).sum() / negatives) if negatives else None,
        }
    return out


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

def _batches(n: int, batch_size: int, order: torch.Tensor) -> list[torch.Tensor]:
    """Batches of indices; a trailing batch of one sample is dropped (BatchNorm needs two)."""
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def predict_logits(model: nn.Module, X: torch.Tensor, device: torch.device, precision) -> torch.Tensor:
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(X), EVAL_BATCH_SIZE):
            batch = _to_device(X[start:start + EVAL_BATCH_SIZE], device)
            with precision.autocast(device):
                outputs.append(model(batch).float().cpu())
    return torch.cat(outputs) if outputs else torch.zeros((0, len(CXR_LABEL_CODES)))


def _config_hash(config: TrainConfig) -> str:
    """What determines the weights: a checkpoint only resumes the run it came from."""
    relevant = config.model_dump(mode="json", include={"task", "model", "data", "optim", "seed", "early_stopping"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def architecture_params(config: TrainConfig) -> dict[str, Any]:
    """kwargs that rebuild the network with ``build_cxr_model(architecture, n_labels, **params)``."""
    return {"in_channels": config.data.channels, **config.model.params}


def _to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda" and tensor.numel() * tensor.element_size() < 4 * 2**30:
        tensor = tensor.to(device)  # small datasets live on the GPU for the whole run
    return tensor


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
    X_train, Y_train = _to_tensor(data.X_train, device), _to_tensor(data.Y_train, device)
    X_val = _to_tensor(data.X_val, device)
    augment = CxrAugment(config.data.image_size)

    # Class weighting: positives of rare labels count neg/pos times (capped at 50).
    positives = data.Y_train.sum(axis=0)
    pos_weight = torch.tensor(np.clip((len(data.Y_train) - positives) / np.maximum(positives, 1.0), 1.0, 50.0),
                              dtype=torch.float32, device=device)
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    optim = config.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    steps = len(_batches(len(data.X_train), optim.batch_size, torch.arange(len(data.X_train))))
    total_steps = steps * optim.epochs
    if optim.scheduler == "onecycle" and total_steps >= 4:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.lr, total_steps=total_steps,
                                                        pct_start=max(0.25, 2.0 / total_steps))
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    scaler = precision.make_scaler()
    early = EarlyStopping(config.early_stopping.patience, config.early_stopping.mode, config.early_stopping.min_delta)

    checkpoint_path = Path(config.checkpoint_dir) / CHECKPOINT_FILENAME
    config_hash = _config_hash(config)
    start_epoch, history, best_state, finished = 0, [], None, False
    if resume and checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                  scaler=scaler, early_stopping=early, generator=generator, device=device)
        if payload.get("config_hash") != config_hash:
            raise ValueError(f"checkpoint {checkpoint_path} belongs to a different training config; "
                             "remove it or train with resume=False")
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        start_epoch, history = payload["epoch"] + 1, payload["history"]
        best_state, finished = payload["best_state"], payload["finished"]
        log.info("resuming from %s after epoch %d", checkpoint_path, payload["epoch"] + 1)

    for epoch in range(start_epoch, optim.epochs):
        if finished:
            break
        model.train()
        order = torch.randperm(len(data.X_train), generator=generator)
        running, seen = 0.0, 0
        batches = _batches(len(data.X_train), optim.batch_size, order)
        with tqdm(batches, desc=f"epoch {epoch + 1}/{optim.epochs}", disable=not progress, leave=False,
                  unit="batch") as bar:
            for index in bar:
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
                index = index.to(X_train.device)
                xb = _to_device(augment(X_train[index], seed), device)
                yb = Y_train[index].to(device, non_blocking=True)
                with precision.autocast(device):
                    logits = model(xb)
                loss = criterion(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if optim.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                running += float(loss.detach()) * len(index)
                seen += len(index)
                bar.set_postfix(loss=f"{running / seen:.4f}")

        val_logits = predict_logits(model, X_val, device, precision)
        val_loss = float(nn.functional.binary_cross_entropy_with_logits(
            val_logits, torch.from_numpy(data.Y_val), pos_weight=pos_weight.cpu()))
        val_probs = torch.sigmoid(val_logits).numpy()
        val_auroc = per_label_auroc(data.Y_val, val_probs)
        metrics = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "val_loss": val_loss,
                   "val_macro_auroc": macro(val_auroc), "val_auroc": val_auroc,
                   "val_nih_auroc": _subset_auroc(data, val_probs, "nih"),
                   "lr": optimizer.param_groups[0]["lr"]}
        history.append(metrics)
        if early.step(metrics[config.early_stopping.metric], epoch):
            best_state = state_dict_cpu(model)
        finished = early.should_stop or epoch == optim.epochs - 1
        save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                        epoch=epoch, early_stopping=early, generator=generator, history=history,
                        best_state=best_state, finished=finished, config_hash=config_hash)
        summary = (f"epoch {epoch + 1}/{optim.epochs}: train loss {metrics['train_loss']:.4f}, val loss "
                   f"{val_loss:.4f}, val macro AUROC {metrics['val_macro_auroc']:.4f}, NIH val AUROC "
                   f"{json.dumps({k: round(v, 3) for k, v in metrics['val_nih_auroc'].items()})}")
        if progress:
            tqdm.write(summary)
        log.info(summary)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if early.should_stop:
            log.info("early stopping: no %s improvement for %d epochs", config.early_stopping.metric, early.patience)
            break

    if best_state is not None:
        model.load_state_dict(best_state)
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
    val_probs = torch.sigmoid(predict_logits(model, _to_tensor(data.X_val, device), device, precision)).numpy()
    thresholds = choose_thresholds(data.Y_val, val_probs, config.threshold_method)
    val_auroc = per_label_auroc(data.Y_val, val_probs)
    metrics: dict[str, Any] = {
        "val_macro_auroc": macro(val_auroc), "val_auroc": val_auroc,
        "val_nih_auroc": _subset_auroc(data, val_probs, "nih"),
        "val_phantom_auroc": _subset_auroc(data, val_probs, "phantom"),
        "val_operating_points": operating_points(data.Y_val, val_probs, thresholds),
        "best_epoch": (early.best_epoch + 1) if early.best_epoch is not None else None,
        "epochs_run": len(history), "early_stopping_metric": config.early_stopping.metric,
        "history": history, "train_seconds": round(train_seconds, 1), "device": str(device),
        "threshold_method": config.threshold_method, "data_counts": data.counts,
    }
    if data.X_test is not None:
        test_probs = torch.sigmoid(predict_logits(model, _to_tensor(data.X_test, device), device, precision)).numpy()
        test_auroc = per_label_auroc(data.Y_test, test_probs)
        metrics.update({"test_phantom_macro_auroc": macro(test_auroc), "test_phantom_auroc": test_auroc,
                        "test_operating_points": operating_points(data.Y_test, test_probs, thresholds)})

    size, channels = config.data.image_size, config.data.channels
    checkpoint_dir = Path(config.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="export-", dir=checkpoint_dir))
    try:
        model_cpu = model.to("cpu", memory_format=torch.contiguous_format).eval()
        torch.save(state_dict_cpu(model_cpu), staging / "state_dict.pt")
        parity_inputs = torch.from_numpy(np.ascontiguousarray(data.X_val[: config.export.parity_samples]))
        example = parity_inputs[:1]
        if config.export.onnx:
            export_onnx(model_cpu, staging / "model.onnx", example)
            metrics["onnx_parity_max_abs_diff"] = require_parity(
                model_cpu, staging / "model.onnx", parity_inputs, tolerance=config.export.parity_tolerance)
        if config.export.torchscript:
            export_torchscript(model_cpu, staging / "model.pt", example)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.load(str(staging / "model.pt"))
            with torch.no_grad():
                diff = float((torch.sigmoid(scripted(parity_inputs)) - torch.sigmoid(model_cpu(parity_inputs))).abs().max())
            if diff > config.export.parity_tolerance:
                raise RuntimeError(f"TorchScript export differs from the trained model by {diff:.3g}")
            metrics["torchscript_parity_max_abs_diff"] = diff

        # Every source this trainer knows (phantoms, the NIH sample PNGs) makes a demo model.
        demo = True
        card = ModelCard(
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
        registered = registry.register(config.registry.name, staging, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if config.registry.alias:
        registry.set_alias(registered.name, config.registry.alias, registered.version)
    registered = registry.resolve(registered.ref)
    log.info("registered %s (val macro AUROC %.4f)", registered.ref, metrics["val_macro_auroc"])
    return registered


def _json_safe(value: Any) -> Any:
    """NaN → None and NumPy scalars → Python, so the card is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if np.isnan(value) or np.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value

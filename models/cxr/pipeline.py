"""The chest X-ray pre-read: radiograph → network probabilities + triage + Grad-CAM heatmaps.

This is the whole read of one image, runnable in a notebook, a test, a benchmark or a Ray Serve
replica (serving/ wraps it, it does not re-implement it). It mirrors ``models.ecg.pipeline``.

Two networks, one set of weights:

- Probabilities come from the inference backend the caller picks (ONNX Runtime by default,
  CUDA provider when a GPU is usable; or PyTorch/TorchScript) — the fast, batched path.
- Grad-CAM needs gradients and forward/backward hooks on a named layer, which neither ONNX
  Runtime nor a frozen TorchScript module offers. So the reader also rebuilds the PyTorch
  network from the registered version's card (architecture + ``architecture_params``) and
  ``state_dict.pt`` (the same weights the ONNX file was exported from, parity-checked at
  registration) and runs Grad-CAM on it, one image at a time, only for the findings that are
  called positive (the top ``max_heatmaps`` by probability; specific findings before ``ANY``).
  A version registered without ``state_dict.pt`` still reads; it just has no heatmaps
  (``heatmaps_available`` is False and a warning is logged once).

Before anything is read, the acceptance check (``datasets.imaging.acceptance``): a film that is
not a frontal adult chest radiograph, upright, with the right polarity and enough pixels is not
read; its ``quality`` says why and what to do, and it gets no findings and no level from findings.

Heatmaps are returned in the ORIGINAL image geometry (the letterbox padding is removed and the
resize inverted), float32 in [0, 1], with an RGB overlay of exactly the source's rows and columns
(pixel-aligned; ``overlay_max_side`` can cap it) for the worklist and the Secondary Capture.

Levels: only findings the card says were learned from real films (``ModelCard.drives_level``) feed
the triage, and the CXR rules fire at the card's validation operating points
(configs/triage/cxr.yaml); ``operating_point.detail`` carries those points' validation (and
held-out) sensitivity and specificity.

A read goes into the SR and the heatmap Secondary Capture as it is (serving/results/outbound.py).
The read's parts that are not the model's numbers (source, quality, a film not read) are built in
``models.cxr.read_parts``.

Not thread-safe for heatmaps (Grad-CAM hooks the shared network for the duration of a call);
one reader per replica, as serving uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.imaging.acceptance import Acceptance, AcceptancePolicy, check_chest_film
from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import heatmap_to_original, preprocess_with_geometry
from datasets.vocabulary.cxr_labels import ANY_ABNORMALITY
from models.backends import STATE_DICT_FILENAME, InferenceBackend, load_backend
from models.card import ModelCard
from models.cxr.gradcam import gradcam_batch
from models.cxr.network import build_cxr_model
from models.cxr.overlay import render_overlay
from models.cxr.read_parts import DISCLAIMER, not_read, quality_view, source_view
from models.read import HeatmapPixels, PreRead
from models.registry import Registry, open_registry
from models.triage import TriageRules, triage

log = logging.getLogger(__name__)

MAX_HEATMAPS = 3
OVERLAY_MAX_SIDE = None  # None: the overlay has the source's own rows and columns (pixel-aligned)


def build_cxr_network(card: ModelCard):
    """A fresh PyTorch network for a chest X-ray card (weights not loaded)."""
    if card.task != "cxr":
        raise ValueError(f"card is for task {card.task!r}, not 'cxr'")
    return build_cxr_model(card.architecture, len(card.labels), **card.architecture_params)


def load_cam_network(model_dir: str | Path, card: ModelCard | None = None, device: str | None = None):
    """The registered version's PyTorch network (eval mode, on ``device``: CUDA when available)
    for Grad-CAM, rebuilt from the card and ``state_dict.pt``."""
    model_dir = Path(model_dir)
    card = card or ModelCard.load(model_dir)
    state_path = model_dir / STATE_DICT_FILENAME
    if not state_path.is_file():
        raise FileNotFoundError(f"{state_path} not found: Grad-CAM needs the PyTorch weights")
    network = build_cxr_network(card)
    network.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return network.to(device).eval()


def _input_geometry(card: ModelCard) -> tuple[int, int]:
    """(channels, size) of the card's input [None, C, S, S]."""
    shape = list(card.input.shape)
    if len(shape) != 4 or shape[2] != shape[3] or shape[1] not in (1, 3):
        raise ValueError(f"chest X-ray card input shape must be [None, 1|3, S, S], got {shape}")
    return int(shape[1]), int(shape[2])


class CxrPreReader:
    """Read chest radiographs with one registered model.

    Args:
        backend: the inference backend (probabilities).
        card: the model's card (labels, thresholds, input size, identity).
        rules: triage rules (configs/triage/cxr.yaml).
        cam_network: the PyTorch network for Grad-CAM (``load_cam_network``), or None for no heatmaps.
        threshold_overrides: label code → threshold replacing the card's (site tuning, tests).
        max_heatmaps: heatmaps per image at most (positive findings only).
        overlay_max_side: long side of the returned overlay pictures at most; None (default): the
            source's own geometry, pixel-aligned with the original.
        acceptance_policy: limits of the acceptance check (datasets.imaging.acceptance).
        defer_overlays: return the Grad-CAM maps in network-input space (``PreRead.cam_maps``, uint8)
            instead of full-resolution pictures; the caller, which holds the image anyway, renders them
            with ``models.cxr.overlay.render_deferred_heatmaps`` (a Ray replica: kB back, not MB).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        card: ModelCard,
        rules: TriageRules,
        cam_network=None,
        threshold_overrides: dict[str, float] | None = None,
        max_heatmaps: int = MAX_HEATMAPS,
        overlay_max_side: int | None = OVERLAY_MAX_SIDE,
        acceptance_policy: AcceptancePolicy | None = None,
        defer_overlays: bool = False,
    ):
        if card.task != "cxr":
            raise ValueError(f"CxrPreReader needs a 'cxr' model, got a {card.task!r} card")
        rules.require_labels(list(card.labels), f"model {card.name}/{card.version}")
        self.backend, self.card, self.rules = backend, card, rules
        self.cam_network = cam_network
        self.labels = list(card.labels)
        names = card.label_names or card.labels
        self.label_names = dict(zip(card.labels, names))
        self.threshold_overrides: dict[str, float] = {}
        for code, value in (threshold_overrides or {}).items():
            if code not in self.labels:
                raise KeyError(f"threshold override for unknown label {code!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"threshold for {code} must be in [0, 1], got {value}")
            self.threshold_overrides[code] = float(value)
        self.channels, self.size = _input_geometry(card)
        self.max_heatmaps = int(max_heatmaps)
        self.overlay_max_side = None if overlay_max_side is None else int(overlay_max_side)
        self.acceptance_policy = acceptance_policy or AcceptancePolicy()
        self.defer_overlays = bool(defer_overlays)

    @classmethod
    def from_registry(
        cls,
        registry: Registry | str | Path,
        ref: str,
        triage_rules: str | Path,
        backend: str = "onnxruntime",
        *,
        heatmaps: bool = True,
        cam_device: str | None = None,
        threshold_overrides: dict[str, float] | None = None,
        defer_overlays: bool = False,
        **backend_options: Any,
    ) -> CxrPreReader:
        """Load ``ref`` (``cxr``, ``cxr@champion``, ``cxr/3``) from ``registry`` (a Registry, a folder
        or an MLflow URI: models.registry.open_registry) with ``backend`` for probabilities
        and, if ``heatmaps``, its PyTorch network for Grad-CAM (on ``cam_device``, default CUDA
        when available). ``backend_options`` go to ``models.backends.load_backend``."""
        registered = open_registry(registry).resolve(ref)
        card = registered.card
        card.version = registered.version
        cam_network = None
        if heatmaps:
            try:
                cam_network = load_cam_network(registered.path, card, cam_device)
            except FileNotFoundError as exc:
                log.warning("%s: no heatmaps for this model (%s)", registered.ref, exc)
        backend_impl = load_backend(Path(registered.path), backend, build_network=build_cxr_network, **backend_options)
        return cls(
            backend_impl,
            card,
            TriageRules.from_yaml(triage_rules),
            cam_network=cam_network,
            threshold_overrides=threshold_overrides,
            defer_overlays=defer_overlays,
        )

    @property
    def heatmaps_available(self) -> bool:
        return self.cam_network is not None

    @property
    def model_identity(self) -> dict[str, Any]:
        return self.card.identity(self.backend.name)

    def preprocess(self, record: ImageRecord | np.ndarray):
        """(network input (C, S, S), letterbox geometry) — THE preprocessing training used."""
        return preprocess_with_geometry(record, size=self.size, channels=self.channels)

    def acceptance(self, record: ImageRecord | np.ndarray) -> Acceptance:
        """The acceptance check (datasets.imaging.acceptance): a frontal adult chest film, upright,
        right polarity, big enough. A bare array has no header: only the image evidence applies."""
        if not isinstance(record, ImageRecord):
            record = ImageRecord(pixels=np.asarray(record, dtype=np.float32))
        return check_chest_film(record, self.acceptance_policy)

    def read_batch(self, records: Sequence[ImageRecord]) -> list[PreRead]:
        """Read a batch: the acceptance check per image, one backend call for the probabilities of the
        accepted ones, then triage and Grad-CAM per image. A film that fails acceptance is not read."""
        if not records:
            return []
        started = time.perf_counter()
        verdicts = [self.acceptance(record) for record in records]
        accepted = [index for index, verdict in enumerate(verdicts) if verdict.acceptable]
        inputs = {index: self.preprocess(records[index])[0] for index in accepted}
        acceptance_and_preprocess_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        probabilities = {}
        if accepted:
            batch = np.stack([inputs[index] for index in accepted]).astype(np.float32, copy=False)
            probabilities = dict(zip(accepted, self.backend.predict(batch)))
        model_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        wanted = {
            index: self._heatmap_indices(
                probabilities[index], self.thresholds_for(getattr(records[index], "site", None))[0]
            )
            for index in accepted
        }
        maps = self.cam_maps(inputs, wanted)
        gradcam_ms = (time.perf_counter() - started) * 1000.0
        timing = {
            "batch_preprocess_ms": round(acceptance_and_preprocess_ms, 2),
            "batch_model_ms": round(model_ms, 2),
            "batch_gradcam_ms": round(gradcam_ms, 2),
            "batch_size": len(records),
        }
        return [
            self._read(record, probabilities[index], timing, verdicts[index], (wanted[index], maps.get(index)))
            if index in inputs
            else not_read(self.model_identity, record, verdicts[index], timing)
            for index, record in enumerate(records)
        ]

    def thresholds_for(self, site: str | None) -> tuple[dict[str, float], dict[str, Any] | None]:
        """The card's thresholds with ``site``'s own operating points (ModelCard.thresholds_for_site),
        then this reader's overrides on top."""
        thresholds, site_point = self.card.thresholds_for_site(site)
        return {**thresholds, **self.threshold_overrides}, site_point

    def operating_point_detail(self, thresholds: dict[str, float]) -> dict[str, Any]:
        """What each level-driving finding's threshold means: the card's validation sensitivity and
        specificity there (and the held-out test figures, with their 95 % intervals), where the card has
        them for the threshold in use (a site's or a test's own threshold has none)."""
        metrics = self.card.metrics or {}
        validation = metrics.get("val_operating_points") or {}
        held_out = metrics.get("test_held_out") or {}
        detail: dict[str, Any] = {}
        for code in self.labels:
            if not self.card.drives_level(code) or code == ANY_ABNORMALITY or code not in validation:
                continue
            if abs(thresholds[code] - self.card.thresholds.get(code, -1.0)) > 1e-9:
                continue
            entry = {"threshold": round(thresholds[code], 4), "validation": validation[code]}
            if code in held_out:
                entry["held_out_test"] = {k: held_out[code][k] for k in ("auroc", "sensitivity", "specificity", "n")}
            detail[code] = entry
        return detail

    def _heatmap_indices(self, probs: np.ndarray, thresholds: dict[str, float]) -> list[int]:
        """Positive findings to explain, among those that drive a level (a map of a finding never learned
        from real films explains nothing): specific findings by probability, then ANY; at most max_heatmaps."""
        positive = [
            i for i, code in enumerate(self.labels) if probs[i] >= thresholds[code] and self.card.drives_level(code)
        ]
        positive.sort(key=lambda i: (self.labels[i] == ANY_ABNORMALITY, -float(probs[i])))
        return positive[: self.max_heatmaps]

    def cam_maps(self, inputs: dict[int, np.ndarray], wanted: dict[int, list[int]]) -> dict[int, np.ndarray]:
        """Grad-CAM maps in network-input space for ``wanted`` (image key → label indices), batched over
        the images (models.cxr.gradcam.gradcam_batch): image key → (k, S, S)."""
        pairs = [(key, index) for key, indices in wanted.items() for index in indices]
        if not pairs or self.cam_network is None:
            return {}
        keys = sorted({key for key, _ in pairs})
        row = {key: position for position, key in enumerate(keys)}
        batch = np.stack([inputs[key] for key in keys]).astype(np.float32, copy=False)
        flat = gradcam_batch(self.cam_network, batch, [(row[key], index) for key, index in pairs])
        out: dict[int, list[np.ndarray]] = {}
        for (key, _), plane in zip(pairs, flat):
            out.setdefault(key, []).append(plane)
        return {key: np.stack(planes) for key, planes in out.items()}

    def heatmap_entries(
        self,
        record: ImageRecord | np.ndarray,
        indices: Sequence[int],
        maps: np.ndarray,
        probs: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Maps (k, S, S) of ``indices`` → heatmap entries on the original image (its rows and columns)."""
        pixels = record.pixels if isinstance(record, ImageRecord) else np.asarray(record, dtype=np.float32)
        original = heatmap_to_original(maps, pixels.shape).astype(np.float32, copy=False)
        out = []
        for index, heat in zip(indices, original):
            code = self.labels[index]
            entry = {
                "code": code,
                "name": self.label_names[code],
                "heatmap": heat,
                "overlay_rgb": render_overlay(pixels, heat, max_side=self.overlay_max_side),
            }
            if probs is not None:
                entry["probability"] = round(float(probs[index]), 4)
            out.append(entry)
        return out

    def heatmaps(
        self,
        record: ImageRecord | np.ndarray,
        network_input: np.ndarray,
        indices: Sequence[int],
        probs: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Grad-CAM for ``indices`` on one image, mapped back to its original geometry."""
        maps = self.cam_maps({0: network_input}, {0: list(indices)})
        return self.heatmap_entries(record, indices, maps[0], probs) if 0 in maps else []

    def _read(
        self,
        record: ImageRecord,
        probs: np.ndarray,
        batch_timing: dict[str, Any],
        verdict: Acceptance,
        cams: tuple[list[int], np.ndarray | None],
    ) -> PreRead:
        by_code = {code: float(p) for code, p in zip(self.labels, probs)}
        thresholds, site_point = self.thresholds_for(getattr(record, "site", None))
        positive = {code: bool(p >= thresholds[code]) for code, p in by_code.items()}
        drives = {code: self.card.drives_level(code) for code in by_code}
        findings = [
            {
                "code": code,
                "name": self.label_names[code],
                "probability": round(p, 4),
                "threshold": thresholds[code],
                "positive": positive[code],
                "drives_level": drives[code],
            }
            for code, p in by_code.items()
        ]
        # Only findings learned from real films may set a level or a score.
        result = triage({code: p for code, p in by_code.items() if drives[code]}, {}, self.rules, positive)
        started = time.perf_counter()
        heatmaps, cam_maps = self._heatmap_fields(record, probs, cams)
        overlay_ms = (time.perf_counter() - started) * 1000.0
        return PreRead.model_validate(
            {
                "modality": "CXR",
                "preliminary": True,
                "disclaimer": DISCLAIMER,
                "model": self.model_identity,
                "findings": findings,
                "operating_point": {
                    **(site_point or {"site": None, "source": "model card"}),
                    "detail": self.operating_point_detail(thresholds),
                },
                "quality": quality_view(verdict),
                "triage": result.model_dump(),
                "heatmaps": [
                    {key: h.get(key) for key in ("code", "name", "probability")}
                    | {"shape": h.get("shape") or [int(n) for n in np.shape(h["heatmap"])]}
                    for h in heatmaps
                ],
                "pixels": {
                    h["code"]: HeatmapPixels(h["heatmap"], h["overlay_rgb"]) for h in heatmaps if "heatmap" in h
                },
                "cam_maps": cam_maps,
                "source": source_view(record),
                "timing": {**batch_timing, "overlay_ms": round(overlay_ms, 2)},
            }
        )

    def _heatmap_fields(
        self, record: ImageRecord, probs: np.ndarray, cams: tuple[list[int], np.ndarray | None]
    ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """The read's heatmap entries and, when the caller renders the pictures (``defer_overlays``),
        the Grad-CAM maps in network-input space as uint8 (``PreRead.cam_maps``)."""
        indices, maps = cams
        if maps is None:
            return [], {}
        if not self.defer_overlays:
            return self.heatmap_entries(record, indices, maps, probs), {}
        cam_maps = {self.labels[i]: np.round(plane * 255.0).astype(np.uint8) for i, plane in zip(indices, maps)}
        shape = [source_view(record)[key] for key in ("rows", "columns")]
        heatmaps = [
            {
                "code": self.labels[i],
                "name": self.label_names[self.labels[i]],
                "probability": round(float(probs[i]), 4),
                "shape": shape,
            }
            for i in indices
        ]
        return heatmaps, cam_maps

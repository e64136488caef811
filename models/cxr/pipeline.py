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

Heatmaps are returned in the ORIGINAL image geometry (the letterbox padding is removed and the
resize inverted), float32 in [0, 1], with an RGB overlay downscaled so its long side is at most
``overlay_max_side`` (1024) for the worklist and the Secondary Capture.

The ``findings`` dicts carry exactly the keys ``serving.results.build_ai_sr`` reads (``code``,
``name``, ``probability``, ``threshold``, ``positive``), and ``model`` the ones its device
observer needs (``name``, ``version``, ``demo``), so a read goes into an SR unchanged::

    sr = build_ai_sr([source_ds], read["findings"], read["model"], read["triage"])
    sc = build_heatmap_sc(source_ds, read["heatmaps"][0]["overlay_rgb"], read["model"])

Not thread-safe for heatmaps (Grad-CAM hooks the shared network for the duration of a call);
one reader per replica, as serving uses it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datasets.imaging.record import ImageRecord
from datasets.imaging.transforms import heatmap_to_original, preprocess_with_geometry
from models.backends import STATE_DICT_FILENAME, InferenceBackend, load_backend
from models.card import ModelCard
from models.cxr.network import build_cxr_model
from datasets.vocabulary.cxr_labels import ANY_ABNORMALITY
from models.read import HeatmapPixels, PreRead
from models.registry import Registry, open_registry
from models.triage import TriageRules, triage

log = logging.getLogger(__name__)

DISCLAIMER = "Preliminary AI read. Not a diagnosis: a doctor must confirm or correct it."
MAX_HEATMAPS = 3
OVERLAY_MAX_SIDE = 1024


def build_cxr_network(card: ModelCard):
    """A fresh PyTorch network for a chest X-ray card (weights not loaded)."""
    if card.task != "cxr":
        raise ValueError(f"card is for task {card.task!r}, not 'cxr'")
    return build_cxr_model(card.architecture, len(card.labels), **card.architecture_params)


def load_cam_network(model_dir: str | Path, card: ModelCard | None = None, device: str | None = None):
    """The registered version's PyTorch network (eval mode, on ``device``: CUDA when available)
    for Grad-CAM, rebuilt from the card and ``state_dict.pt``."""
    import torch

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


def json_view(read: PreRead) -> dict[str, Any]:
    """A read without its pixel arrays (``PreRead.pixels``), for JSON storage and API answers.

    Each heatmap entry keeps ``code``, ``name``, ``probability`` and ``shape`` (rows, cols); the
    pictures themselves travel as the Secondary Capture / PNG the caller makes of them.
    """
    return read.to_json()


class CxrPreReader:
    """Read chest radiographs with one registered model.

    Args:
        backend: the inference backend (probabilities).
        card: the model's card (labels, thresholds, input size, identity).
        rules: triage rules (configs/triage/cxr.yaml).
        cam_network: the PyTorch network for Grad-CAM (``load_cam_network``), or None for no heatmaps.
        threshold_overrides: label code → threshold replacing the card's (site tuning, tests).
        max_heatmaps: heatmaps per image at most (positive findings only).
        overlay_max_side: long side of the returned overlay pictures at most.
    """

    def __init__(self, backend: InferenceBackend, card: ModelCard, rules: TriageRules, cam_network=None,
                 threshold_overrides: dict[str, float] | None = None, max_heatmaps: int = MAX_HEATMAPS,
                 overlay_max_side: int = OVERLAY_MAX_SIDE):
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
        self.overlay_max_side = int(overlay_max_side)

    @classmethod
    def from_registry(cls, registry: Registry | str | Path, ref: str, triage_rules: str | Path,
                      backend: str = "onnxruntime", *, heatmaps: bool = True, cam_device: str | None = None,
                      threshold_overrides: dict[str, float] | None = None,
                      **backend_options: Any) -> "CxrPreReader":
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
        return cls(load_backend(Path(registered.path), backend, build_network=build_cxr_network, **backend_options), card,
                   TriageRules.from_yaml(triage_rules), cam_network=cam_network,
                   threshold_overrides=threshold_overrides)

    @property
    def heatmaps_available(self) -> bool:
        return self.cam_network is not None

    @property
    def model_identity(self) -> dict[str, Any]:
        return {
            "name": self.card.name, "version": self.card.version, "architecture": self.card.architecture,
            "backend": self.backend.name, "demo": self.card.demo, "intended_use": self.card.intended_use,
        }

    def preprocess(self, record: ImageRecord | np.ndarray):
        """(network input (C, S, S), letterbox geometry) — THE preprocessing training used."""
        return preprocess_with_geometry(record, size=self.size, channels=self.channels)

    def read_batch(self, records: Sequence[ImageRecord]) -> list[PreRead]:
        """Read a batch: one backend call for all probabilities, then triage and Grad-CAM per image."""
        if not records:
            return []
        started = time.perf_counter()
        inputs = [self.preprocess(record)[0] for record in records]
        batch = np.stack(inputs).astype(np.float32, copy=False)
        preprocess_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        probabilities = self.backend.predict(batch)
        model_ms = (time.perf_counter() - started) * 1000.0
        timing = {"batch_preprocess_ms": round(preprocess_ms, 2), "batch_model_ms": round(model_ms, 2),
                  "batch_size": len(records)}
        return [self._read(record, network_input, probs, timing)
                for record, network_input, probs in zip(records, inputs, probabilities)]

    def thresholds_for(self, site: str | None) -> tuple[dict[str, float], dict[str, Any] | None]:
        """The card's thresholds with ``site``'s own operating points (ModelCard.thresholds_for_site),
        then this reader's overrides on top."""
        thresholds, site_point = self.card.thresholds_for_site(site)
        return {**thresholds, **self.threshold_overrides}, site_point

    def _heatmap_indices(self, probs: np.ndarray, thresholds: dict[str, float]) -> list[int]:
        """Positive findings to explain: specific findings by probability, then ANY; at most max_heatmaps."""
        positive = [i for i, code in enumerate(self.labels) if probs[i] >= thresholds[code]]
        positive.sort(key=lambda i: (self.labels[i] == ANY_ABNORMALITY, -float(probs[i])))
        return positive[: self.max_heatmaps]

    def heatmaps(self, record: ImageRecord | np.ndarray, network_input: np.ndarray,
                 indices: Sequence[int], probs: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Grad-CAM for ``indices`` on one image, mapped back to its original geometry."""
        if not indices or self.cam_network is None:
            return []
        import torch

        from models.cxr.gradcam import gradcam_heatmaps
        from models.cxr.overlay import render_overlay

        pixels = record.pixels if isinstance(record, ImageRecord) else np.asarray(record, dtype=np.float32)
        maps = gradcam_heatmaps(self.cam_network, torch.from_numpy(np.ascontiguousarray(network_input)), indices)
        original = heatmap_to_original(maps, pixels.shape).astype(np.float32, copy=False)
        out = []
        for index, heat in zip(indices, original):
            code = self.labels[index]
            entry = {"code": code, "name": self.label_names[code], "heatmap": heat,
                     "overlay_rgb": render_overlay(pixels, heat, max_side=self.overlay_max_side)}
            if probs is not None:
                entry["probability"] = round(float(probs[index]), 4)
            out.append(entry)
        return out

    def _read(self, record: ImageRecord, network_input: np.ndarray, probs: np.ndarray,
              batch_timing: dict[str, Any]) -> PreRead:
        by_code = {code: float(p) for code, p in zip(self.labels, probs)}
        thresholds, site_point = self.thresholds_for(getattr(record, "site", None))
        findings = [
            {"code": code, "name": self.label_names[code], "probability": round(p, 4),
             "threshold": thresholds[code], "positive": bool(p >= thresholds[code])}
            for code, p in by_code.items()
        ]
        result = triage(by_code, {}, self.rules)
        started = time.perf_counter()
        heatmaps = self.heatmaps(record, network_input, self._heatmap_indices(probs, thresholds), probs)
        gradcam_ms = (time.perf_counter() - started) * 1000.0
        pixels = record.pixels if isinstance(record, ImageRecord) else np.asarray(record)
        source = {"rows": int(pixels.shape[0]), "columns": int(pixels.shape[1])}
        if isinstance(record, ImageRecord):
            source.update(sop_instance_uid=record.sop_instance_uid, study_instance_uid=record.study_instance_uid,
                          photometric=record.photometric)
        return PreRead.model_validate({
            "modality": "CXR",
            "preliminary": True,
            "disclaimer": DISCLAIMER,
            "model": self.model_identity,
            "findings": findings,
            "operating_point": site_point or {"site": None, "source": "model card"},
            "triage": result.model_dump(),
            "heatmaps": [{"code": h["code"], "name": h["name"], "probability": h.get("probability"),
                          "shape": [int(n) for n in np.shape(h["heatmap"])]} for h in heatmaps],
            "pixels": {h["code"]: HeatmapPixels(h["heatmap"], h["overlay_rgb"]) for h in heatmaps},
            "source": source,
            "timing": {**batch_timing, "gradcam_ms": round(gradcam_ms, 2)},
        })

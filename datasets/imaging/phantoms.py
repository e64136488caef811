"""Synthetic PA chest radiograph phantoms with controlled findings, for demos and tests.

Not anatomy: a cartoon a radiologist would recognise (thorax, dark lungs, mediastinum and spine,
heart, posterior ribs, clavicles, diaphragm domes) whose findings are set by the caller, so a tiny
network can learn them in minutes on a CPU and a test knows the truth:

- ``Cardiomegaly``: heart width / thoracic width (cardiothoracic ratio) ≥ 0.55; normal hearts get
  0.38–0.48.
- ``Effusion``: fluid filling the lung base with a lateral meniscus, blunting the costophrenic angle.
- ``Pneumonia``: patchy, ill-defined airspace opacities in one lung.
- ``Consolidation``: a dense, more homogeneous opacity with a sharper edge (lobar pattern).

Finding names are the ChestX-ray14 names, so ``finding_labels`` reads like an NIH CSV row.
Orientation is the radiographic convention: the patient's right is on the image's left. Pure
numpy; a 256 × 256 phantom takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets.imaging.record import ImageRecord

PHANTOM_FINDINGS = ("Cardiomegaly", "Effusion", "Pneumonia", "Consolidation")
NORMAL_CTR = (0.38, 0.48)
CARDIOMEGALY_CTR = (0.56, 0.66)


@dataclass
class ChestPhantom:
    """One phantom: pixels plus the truth used to draw them.

    Attributes:
        pixels: float32 (size, size) in [0, 1], display orientation (lungs dark, bone bright).
        findings: ChestX-ray14 finding name → present, for every name in ``PHANTOM_FINDINGS``.
        masks: boolean masks ``lungs``, ``heart``, ``opacity`` (pneumonia + consolidation) and
            ``effusion`` — where each finding is, for checking heatmaps.
        cardiothoracic_ratio: heart width / inner thoracic width as drawn.
    """

    pixels: np.ndarray
    findings: dict[str, bool]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    cardiothoracic_ratio: float = 0.0

    @property
    def abnormal(self) -> bool:
        return any(self.findings.values())

    @property
    def finding_labels(self) -> str:
        """NIH CSV style: ``"Cardiomegaly|Effusion"`` or ``"No Finding"``."""
        present = [name for name in PHANTOM_FINDINGS if self.findings.get(name)]
        return "|".join(present) if present else "No Finding"

    def to_record(self, pixel_spacing_mm: float | None = None) -> ImageRecord:
        spacing = (pixel_spacing_mm, pixel_spacing_mm) if pixel_spacing_mm else None
        return ImageRecord(
            pixels=self.pixels.copy(),
            spacing_mm=spacing,
            photometric="MONOCHROME2",
            modality="DX",
            body_part="CHEST",
            view_position="PA",
            bits_stored=16,
            meta={"format": "phantom", "findings": self.finding_labels},
        )

    def to_uint16(self, bits: int = 12) -> np.ndarray:
        """Pixels as integers (for wrapping as DICOM with ``wrap_array_as_dicom``)."""
        return np.rint(self.pixels * (2**bits - 1)).astype(np.uint16)


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur via cumulative sums (edges replicated); two passes ≈ a Gaussian."""
    if radius < 1:
        return image
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius + 1, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        summed = np.cumsum(padded, axis=axis, dtype=np.float64)
        upper = np.take(summed, np.arange(2 * radius + 1, summed.shape[axis]), axis=axis)
        lower = np.take(summed, np.arange(0, summed.shape[axis] - 2 * radius - 1), axis=axis)
        out = ((upper - lower) / (2 * radius + 1)).astype(np.float32)
    return out


def _smooth(image: np.ndarray, radius: int) -> np.ndarray:
    return _box_blur(_box_blur(image, radius), radius)


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


@dataclass
class _Thorax:
    """The drawn anatomy a phantom's findings are placed in (coordinates in image fractions)."""

    yy: np.ndarray
    xx: np.ndarray
    body_cx: float
    lung_cy: float
    lung_ry: float
    lung_rx: float
    right_cx: float  # patient's right lung: the image's left
    left_cx: float
    body: np.ndarray
    right_lung: np.ndarray = field(init=False)
    left_lung: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.right_lung = _ellipse(self.yy, self.xx, self.lung_cy, self.right_cx, self.lung_ry, self.lung_rx) & (
            self.yy < self.diaphragm(self.right_cx)
        )
        self.left_lung = _ellipse(self.yy, self.xx, self.lung_cy, self.left_cx, self.lung_ry, self.lung_rx) & (
            self.yy < self.diaphragm(self.left_cx) + 0.015
        )

    @property
    def lungs(self) -> np.ndarray:
        return self.right_lung | self.left_lung

    def diaphragm(self, cx: float) -> np.ndarray:
        """Dome: highest over the lung centre, falling laterally into the costophrenic angle."""
        return self.lung_cy + 0.62 * self.lung_ry + 0.10 * ((self.xx - cx) / self.lung_rx) ** 2

    def random_lung(self, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        """(centre x, mask) of one lung, either side with equal chance."""
        return (self.right_cx, self.right_lung) if rng.random() < 0.5 else (self.left_cx, self.left_lung)


def _jitter(rng: np.random.Generator, scale: float) -> float:
    return float(rng.uniform(-scale, scale))


def _draw_thorax(rng: np.random.Generator, n: int) -> _Thorax:
    """Thorax and lungs with a little anatomical variation. Patient's right lung is on the image's left."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / np.float32(n)
    body_cx = 0.5 + _jitter(rng, 0.02)
    lung_cy, lung_ry = 0.45 + _jitter(rng, 0.02), 0.29 + _jitter(rng, 0.02)
    lung_rx = 0.15 + _jitter(rng, 0.01)
    lung_gap = 0.20 + _jitter(rng, 0.015)  # centre-to-midline distance
    body = _ellipse(yy, xx, 0.55, body_cx, 0.52, 0.46)
    return _Thorax(yy, xx, body_cx, lung_cy, lung_ry, lung_rx, body_cx - lung_gap, body_cx + lung_gap, body)


def _draw_anatomy(rng: np.random.Generator, t: _Thorax, cardiomegaly: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, heart mask, cardiothoracic ratio): body, lungs, mediastinum and spine, heart, ribs, clavicles."""
    yy, xx, n = t.yy, t.xx, t.yy.shape[0]
    lungs = t.lungs
    thoracic_width = (t.left_cx + t.lung_rx) - (t.right_cx - t.lung_rx)
    image = np.full((n, n), 0.04, dtype=np.float32)  # air outside the patient
    image[t.body] = 0.52
    image[lungs] = 0.16
    image += np.where(lungs, 0.06 * (yy - t.lung_cy) / t.lung_ry, 0.0).astype(np.float32)  # denser bases

    # Mediastinum and spine: bright midline.
    mediastinum = (np.abs(xx - t.body_cx) < 0.065) & (yy > 0.06) & (yy < t.lung_cy + 0.55 * t.lung_ry) & t.body
    image[mediastinum] = 0.72
    spine = (np.abs(xx - t.body_cx) < 0.035) & t.body
    image[spine] = np.maximum(image[spine], 0.80)

    # Heart: above the diaphragm, mostly to the patient's left (image right).
    ctr = float(rng.uniform(*(CARDIOMEGALY_CTR if cardiomegaly else NORMAL_CTR)))
    heart_width = ctr * thoracic_width
    heart_ry = 0.08 + 0.12 * heart_width
    heart_cy = t.lung_cy + 0.62 * t.lung_ry - 0.55 * heart_ry
    heart = _ellipse(yy, xx, heart_cy, t.body_cx + 0.16 * heart_width, heart_ry, heart_width / 2) & t.body
    image[heart] = np.maximum(image[heart], 0.70)
    _draw_ribs(t, image, t.body & ~heart & ~mediastinum)
    return image, heart, ctr


def _draw_ribs(t: _Thorax, image: np.ndarray, visible: np.ndarray) -> None:
    """Posterior ribs: gently curved bright bands over the lungs; clavicles at the apices. Ribs are
    drawn over the lung fields and chest wall only (``visible``: not the heart, mediastinum or
    abdomen), where a radiograph shows them clearly."""
    yy, xx = t.yy, t.xx
    ribs = np.zeros(yy.shape, dtype=bool)
    for index in range(10):
        y0 = 0.16 + index * 0.058
        for cx, sign in ((t.right_cx, -1.0), (t.left_cx, 1.0)):
            curve = y0 + 0.05 * ((xx - cx) / t.lung_rx) ** 2 - 0.03 * sign * (xx - cx) / t.lung_rx
            rib_field = _ellipse(yy, xx, t.lung_cy, cx, t.lung_ry * 1.06, t.lung_rx * 1.12) & (yy < t.diaphragm(cx))
            ribs |= (np.abs(yy - curve) < 0.011) & rib_field
    ribs &= visible
    image[ribs] += 0.14
    clavicle = (np.abs(yy - (0.14 + 0.25 * np.abs(xx - t.body_cx))) < 0.013) & (np.abs(xx - t.body_cx) < 0.30)
    image[clavicle & t.body] += 0.18


def _lung_opacity(rng: np.random.Generator, t: _Thorax, pneumonia: bool, consolidation: bool) -> np.ndarray:
    """The added density of pneumonia (patchy blobs in one lung) and consolidation (a dense lobar region)."""
    yy, xx = t.yy, t.xx
    lesion = np.zeros(yy.shape, dtype=np.float32)
    if pneumonia:
        side_cx, side = t.random_lung(rng)
        for _ in range(int(rng.integers(3, 6))):
            cy = t.lung_cy + rng.uniform(-0.1, 0.45) * t.lung_ry
            cx = side_cx + rng.uniform(-0.5, 0.5) * t.lung_rx
            sigma = rng.uniform(0.025, 0.05)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
            lesion += (0.30 * blob * side).astype(np.float32)
    if consolidation:
        side_cx, side = t.random_lung(rng)
        cy = t.lung_cy + rng.uniform(0.0, 0.35) * t.lung_ry
        cx = side_cx + rng.uniform(-0.2, 0.2) * t.lung_rx
        region = _ellipse(yy, xx, cy, cx, rng.uniform(0.07, 0.11), rng.uniform(0.06, 0.09)) & side
        lesion += np.where(region, 0.42, 0.0).astype(np.float32)
    return _smooth(lesion, max(1, yy.shape[0] // 128))


def _effusion_mask(rng: np.random.Generator, t: _Thorax, effusion: str) -> np.ndarray:
    """Fluid at the base of the named lung(s), with a meniscus: higher laterally, where it climbs the chest wall."""
    sides = {
        "right": [(t.right_cx, t.right_lung)],
        "left": [(t.left_cx, t.left_lung)],
        "both": [(t.right_cx, t.right_lung), (t.left_cx, t.left_lung)],
    }[effusion]
    mask = np.zeros(t.yy.shape, dtype=bool)
    for cx, lung in sides:
        level = t.lung_cy + rng.uniform(0.25, 0.45) * t.lung_ry - 0.10 * np.abs(t.xx - cx) / t.lung_rx
        mask |= lung & (t.yy > level)
    return mask


def chest_phantom(
    size: int = 256,
    *,
    cardiomegaly: bool = False,
    effusion: str | None = None,
    pneumonia: bool = False,
    consolidation: bool = False,
    seed: int | np.random.Generator | None = 0,
    noise: float = 0.015,
) -> ChestPhantom:
    """Draw one phantom.

    Args:
        size: output is ``size × size``.
        cardiomegaly: draw an enlarged heart (CTR 0.56–0.66) instead of a normal one (0.38–0.48).
        effusion: ``"left"``, ``"right"`` or ``"both"`` (patient sides) for pleural effusion.
        pneumonia: patchy opacities in one lung.
        consolidation: a dense homogeneous opacity in one lung.
        seed: seed or Generator for the anatomical variation and noise.
        noise: standard deviation of the additive quantum-like noise.
    """
    if effusion not in (None, "left", "right", "both"):
        raise ValueError(f"effusion must be None, 'left', 'right' or 'both', not {effusion!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = int(size)
    thorax = _draw_thorax(rng, n)
    image, heart, ctr = _draw_anatomy(rng, thorax, cardiomegaly)
    opacity = np.zeros((n, n), dtype=bool)
    effusion_mask = np.zeros((n, n), dtype=bool)
    if pneumonia or consolidation:
        lesion = _lung_opacity(rng, thorax, pneumonia, consolidation)
        opacity = lesion > 0.08
        image += lesion
    if effusion:
        effusion_mask = _effusion_mask(rng, thorax, effusion)
        image[effusion_mask] = np.maximum(image[effusion_mask], 0.58)
    image = _smooth(image, max(1, n // 256))
    image += rng.normal(0.0, noise, size=(n, n)).astype(np.float32)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    findings = {
        "Cardiomegaly": bool(cardiomegaly),
        "Effusion": effusion is not None,
        "Pneumonia": bool(pneumonia),
        "Consolidation": bool(consolidation),
    }
    masks = {"lungs": thorax.lungs, "heart": heart, "opacity": opacity, "effusion": effusion_mask}
    return ChestPhantom(pixels=image, findings=findings, masks=masks, cardiothoracic_ratio=ctr)


def random_chest_phantom(
    size: int = 256, *, seed: int | np.random.Generator | None = None, prevalence: float = 0.3
) -> ChestPhantom:
    """A phantom whose findings are drawn independently, each present with ``prevalence``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    effusion = None
    if rng.random() < prevalence:
        effusion = str(rng.choice(["left", "right", "both"]))
    return chest_phantom(
        size,
        cardiomegaly=bool(rng.random() < prevalence),
        effusion=effusion,
        pneumonia=bool(rng.random() < prevalence),
        consolidation=bool(rng.random() < prevalence),
        seed=rng,
    )


def phantom_dataset(
    count: int, size: int = 128, *, seed: int = 0, prevalence: float = 0.3
) -> tuple[np.ndarray, list[dict[str, bool]]]:
    """``count`` random phantoms: images (count, size, size) float32 and their findings dicts."""
    rng = np.random.default_rng(seed)
    phantoms = [random_chest_phantom(size, seed=rng, prevalence=prevalence) for _ in range(count)]
    return np.stack([p.pixels for p in phantoms]), [p.findings for p in phantoms]

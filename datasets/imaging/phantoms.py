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
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / np.float32(n)
    jitter = lambda scale: float(rng.uniform(-scale, scale))  # noqa: E731 - tiny local helper

    # Thorax and lungs. Patient's right lung is on the image's left.
    body_cx = 0.5 + jitter(0.02)
    lung_cy, lung_ry = 0.45 + jitter(0.02), 0.29 + jitter(0.02)
    lung_rx = 0.15 + jitter(0.01)
    lung_gap = 0.20 + jitter(0.015)  # centre-to-midline distance
    right_cx, left_cx = body_cx - lung_gap, body_cx + lung_gap
    body = _ellipse(yy, xx, 0.55, body_cx, 0.52, 0.46)

    def diaphragm(cx: float) -> np.ndarray:
        # Dome: highest over the lung centre, falling laterally into the costophrenic angle.
        return lung_cy + 0.62 * lung_ry + 0.10 * ((xx - cx) / lung_rx) ** 2

    right_lung = _ellipse(yy, xx, lung_cy, right_cx, lung_ry, lung_rx) & (yy < diaphragm(right_cx))
    left_lung = _ellipse(yy, xx, lung_cy, left_cx, lung_ry, lung_rx) & (yy < diaphragm(left_cx) + 0.015)
    lungs = right_lung | left_lung
    thoracic_width = (left_cx + lung_rx) - (right_cx - lung_rx)

    image = np.full((n, n), 0.04, dtype=np.float32)  # air outside the patient
    image[body] = 0.52
    image[lungs] = 0.16
    image += np.where(lungs, 0.06 * (yy - lung_cy) / lung_ry, 0.0).astype(np.float32)  # denser bases

    # Mediastinum and spine: bright midline.
    mediastinum = (np.abs(xx - body_cx) < 0.065) & (yy > 0.06) & (yy < lung_cy + 0.55 * lung_ry) & body
    image[mediastinum] = 0.72
    spine = (np.abs(xx - body_cx) < 0.035) & body
    image[spine] = np.maximum(image[spine], 0.80)

    # Heart: above the diaphragm, mostly to the patient's left (image right).
    ctr = rng.uniform(*(CARDIOMEGALY_CTR if cardiomegaly else NORMAL_CTR))
    heart_width = float(ctr) * thoracic_width
    heart_cx = body_cx + 0.16 * heart_width
    heart_ry = 0.08 + 0.12 * heart_width
    heart_cy = lung_cy + 0.62 * lung_ry - 0.55 * heart_ry
    heart = _ellipse(yy, xx, heart_cy, heart_cx, heart_ry, heart_width / 2) & body
    image[heart] = np.maximum(image[heart], 0.70)

    # Posterior ribs: gently curved bright bands over the lungs; clavicles at the apices.
    # Ribs are drawn over the lung fields and chest wall only (not the heart, mediastinum or
    # abdomen), where a radiograph shows them clearly.
    ribs = np.zeros((n, n), dtype=bool)
    for index in range(10):
        y0 = 0.16 + index * 0.058
        for cx, sign in ((right_cx, -1.0), (left_cx, 1.0)):
            curve = y0 + 0.05 * ((xx - cx) / lung_rx) ** 2 - 0.03 * sign * (xx - cx) / lung_rx
            rib_field = _ellipse(yy, xx, lung_cy, cx, lung_ry * 1.06, lung_rx * 1.12) & (yy < diaphragm(cx))
            ribs |= (np.abs(yy - curve) < 0.011) & rib_field
    ribs &= body & ~heart & ~mediastinum
    image[ribs] += 0.14
    clavicle = (np.abs(yy - (0.14 + 0.25 * np.abs(xx - body_cx))) < 0.013) & (np.abs(xx - body_cx) < 0.30)
    image[clavicle & body] += 0.18

    # Findings.
    opacity = np.zeros((n, n), dtype=bool)
    effusion_mask = np.zeros((n, n), dtype=bool)
    lesion = np.zeros((n, n), dtype=np.float32)
    if pneumonia:
        side_cx, side = (right_cx, right_lung) if rng.random() < 0.5 else (left_cx, left_lung)
        for _ in range(int(rng.integers(3, 6))):
            cy = lung_cy + rng.uniform(-0.1, 0.45) * lung_ry
            cx = side_cx + rng.uniform(-0.5, 0.5) * lung_rx
            sigma = rng.uniform(0.025, 0.05)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
            lesion += (0.30 * blob * side).astype(np.float32)
    if consolidation:
        side_cx, side = (right_cx, right_lung) if rng.random() < 0.5 else (left_cx, left_lung)
        cy = lung_cy + rng.uniform(0.0, 0.35) * lung_ry
        cx = side_cx + rng.uniform(-0.2, 0.2) * lung_rx
        region = _ellipse(yy, xx, cy, cx, rng.uniform(0.07, 0.11), rng.uniform(0.06, 0.09)) & side
        lesion += np.where(region, 0.42, 0.0).astype(np.float32)
    if pneumonia or consolidation:
        lesion = _smooth(lesion, max(1, n // 128))
        opacity = lesion > 0.08
        image += lesion
    if effusion:
        sides = {
            "right": [(right_cx, right_lung)],
            "left": [(left_cx, left_lung)],
            "both": [(right_cx, right_lung), (left_cx, left_lung)],
        }[effusion]
        for cx, lung in sides:
            # Fluid level with a meniscus: higher laterally, where it climbs the chest wall.
            level = lung_cy + rng.uniform(0.25, 0.45) * lung_ry - 0.10 * np.abs(xx - cx) / lung_rx
            fluid = lung & (yy > level)
            effusion_mask |= fluid
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
    masks = {"lungs": lungs, "heart": heart, "opacity": opacity, "effusion": effusion_mask}
    return ChestPhantom(pixels=image, findings=findings, masks=masks, cardiothoracic_ratio=float(ctr))


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

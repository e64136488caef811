"""MedMNIST (Yang et al. 2023) ``.npz`` files: ``{train,val,test}_images`` (uint8, ``[n, H, W]`` or
``[n, H, W, 3]``) and ``{train,val,test}_labels``; the three splits are the official ones.

Label columns are recognised by their number:
  14  ChestMNIST: the ChestX-ray14 findings in NIH order (= the first 14 served codes);
      ``ANY`` is 1 when any finding is, else 0
  15  the served chest X-ray labels in their own order (an array preread wrote)
  1   PneumoniaMNIST: 1 pneumonia (→ PNEUMONIA and ANY; other findings unknown), 0 normal (all 0)
Pixels are scaled to [0, 1] (colour averaged to gray) and go through THE preprocessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.imaging.transforms import preprocess_image
from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    check_choice,
    cxr_input_spec,
    served_dataset,
    served_labels,
)

SPLITS = ("train", "val", "test")


def _labels_for(targets: np.ndarray, labels: list[str], file: Path, key: str) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.float32).reshape(len(targets), -1)
    width = targets.shape[1]
    if width == len(labels):
        return targets
    out = np.zeros((len(targets), len(labels)), dtype=np.float32)
    any_index = labels.index("ANY")
    if width == 14:
        out[:, :14] = targets
        out[:, any_index] = (targets.max(axis=1) > 0).astype(np.float32)
        return out
    if width == 1:
        pneumonia = targets[:, 0] > 0
        out[pneumonia] = np.nan  # a pneumonia image may show other findings too
        out[pneumonia, labels.index("PNEUMONIA")] = 1.0
        out[pneumonia, any_index] = 1.0
        return out
    raise SourceLayoutError(
        f"medmnist: {file} {key} has {width} label columns; supported: 14 (ChestMNIST), "
        f"{len(labels)} (preread's chest labels), 1 (PneumoniaMNIST)"
    )


def load_medmnist(
    path: str | Path,
    *,
    splits: tuple[str, ...] = SPLITS,
    image_size: int = 224,
    channels: int = 1,
    limit: int | None = None,
) -> SourceDataset:
    file = Path(path)
    for split in splits:
        check_choice("medmnist", "split", split, SPLITS)
    try:
        archive = np.load(file)
    except (OSError, ValueError) as exc:
        raise SourceLayoutError(f"medmnist: cannot read {file} as .npz ({exc})") from None
    with archive:
        present = [s for s in splits if f"{s}_images" in archive.files]
        if not present:
            raise SourceLayoutError(
                f"medmnist: {file} has none of {', '.join(f'{s}_images' for s in splits)} "
                f"(keys: {', '.join(archive.files)})"
            )
        labels, _ = served_labels("cxr")
        images, Ys, rows = [], [], []
        for split in present:
            if f"{split}_labels" not in archive.files:
                raise SourceLayoutError(f"medmnist: {file} has {split}_images but no {split}_labels")
            pixels, targets = archive[f"{split}_images"], archive[f"{split}_labels"]
            if len(pixels) != len(targets):
                raise SourceLayoutError(
                    f"medmnist: {file}: {len(pixels)} {split}_images but {len(targets)} {split}_labels"
                )
            images.append(pixels)
            Ys.append(_labels_for(targets, labels, file, f"{split}_labels"))
            rows += [
                {"id": f"{split}-{i}", "split": split, "site": "MedMNIST", "index": len(rows) + i}
                for i in range(len(pixels))
            ]
    stack = np.concatenate(images)

    def load(row: Mapping[str, Any]) -> np.ndarray:
        pixels = stack[int(row["index"])].astype(np.float32) / 255.0
        if pixels.ndim == 3:
            pixels = pixels.mean(axis=-1)
        return preprocess_image(pixels, size=image_size, channels=channels)

    return served_dataset(
        "medmnist",
        "cxr",
        file,
        np.concatenate(Ys),
        pd.DataFrame(rows),
        loader=load,
        input_spec=cxr_input_spec(image_size, channels),
        notes=[f"MedMNIST splits {', '.join(present)} (official); {stack.shape[1]} px images"],
        description=f"MedMNIST {file.name}: {len(rows)} images ({', '.join(present)})",
    ).head(limit)

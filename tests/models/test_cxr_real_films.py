"""The chest X-ray read on real films it never saw: a small model trained by our own training code on
the NIH training films (tests/data/cxr-real-small.yaml) reads the 40 held-out films of cxr/nih, sent
as DICOM, with the card's own thresholds (nothing forced). "Urgent" must separate pneumonia from normal
films; a model that calls pneumonia on every film must fail the same check (it is run on one too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.imaging import read_dicom_image, wrap_png_as_dicom
from evaluation.metrics import auroc
from models.cxr.pipeline import CxrPreReader
from models.read import PreRead
from models.registry import ModelRegistry
from training.config import TrainConfig, load_train_config
from training.cxr import train_cxr

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "configs" / "triage" / "cxr.yaml"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cxr-real")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fields = load_train_config(REPO / "tests" / "data" / "cxr-real-small.yaml").model_dump()
        fields.update(checkpoint_dir=str(root / "checkpoints"))
        train_cxr(TrainConfig.model_validate(fields), registry=ModelRegistry(root / "registry"), progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "registry"


@pytest.fixture(scope="module")
def held_out(nih_dir) -> tuple[list, np.ndarray]:
    paths = sorted(nih_dir.glob("*/*.png"))
    records = [read_dicom_image(wrap_png_as_dicom(path, patient_age="055Y")) for path in paths]
    return records, np.array([path.parent.name == "Pneumonia" for path in paths])


def check_separates(pre_reads: list[PreRead], pneumonia: np.ndarray) -> dict[str, float]:
    """What a useful read of these films must show: urgent on most pneumonia films and few normal ones."""
    reads = [read.to_json() for read in pre_reads]
    assert all(read["quality"]["acceptable"] for read in reads), "real frontal adult films must be accepted"
    urgent = np.array([read["triage"]["level"] != "routine" for read in reads])
    p = np.array([next(f["probability"] for f in read["findings"] if f["code"] == "PNEUMONIA") for read in reads])
    figures = {
        "auroc": auroc(pneumonia, p),
        "sensitivity": float(urgent[pneumonia].mean()),
        "specificity": float((~urgent[~pneumonia]).mean()),
    }
    assert figures["auroc"] >= 0.65, figures
    assert figures["sensitivity"] >= 0.5 and figures["specificity"] >= 0.5, figures
    return figures


def test_held_out_real_films_separate_pneumonia_from_normal(registry, held_out):
    records, pneumonia = held_out
    reader = CxrPreReader.from_registry(registry, "cxr@champion", TRIAGE, heatmaps=False)
    assert reader.card.learned_from_real["PNEUMONIA"] and not reader.card.learned_from_real["PNEUMOTHORAX"]
    assert reader.card.metrics["test_held_out"]["PNEUMONIA"]["n"] == 40
    reads = reader.read_batch(records)
    check_separates(reads, pneumonia)
    # Only findings learned from real films drive a level, and each read says what its threshold means.
    for read in (r.to_json() for r in reads):
        assert {f["code"] for f in read["findings"] if f["drives_level"]} == {"PNEUMONIA", "ANY"}
        assert "validation" in read["operating_point"]["detail"]["PNEUMONIA"]


class AlwaysPneumonia:
    """A backend that calls pneumonia (and any abnormality) on every film."""

    name = "always-pneumonia"

    def __init__(self, labels: list[str]):
        self.labels = labels

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = np.full((len(batch), len(self.labels)), 0.01, dtype=np.float32)
        out[:, self.labels.index("PNEUMONIA")] = 0.99
        out[:, self.labels.index("ANY")] = 0.99
        return out


def test_a_model_calling_pneumonia_on_every_film_fails_the_check(registry, held_out):
    records, pneumonia = held_out
    reader = CxrPreReader.from_registry(registry, "cxr@champion", TRIAGE, heatmaps=False)
    reader.backend = AlwaysPneumonia(reader.labels)
    with pytest.raises(AssertionError):
        check_separates(reader.read_batch(records), pneumonia)


def test_a_finding_never_learned_from_real_films_does_not_drive_a_level(registry, held_out):
    records, _ = held_out
    reader = CxrPreReader.from_registry(registry, "cxr@champion", TRIAGE, heatmaps=False)

    class AlwaysPneumothorax(AlwaysPneumonia):
        def predict(self, batch):
            out = np.full((len(batch), len(self.labels)), 0.01, dtype=np.float32)
            out[:, self.labels.index("PNEUMOTHORAX")] = 0.99
            return out

    reader.backend = AlwaysPneumothorax(reader.labels)
    for read in (r.to_json() for r in reader.read_batch(records[:3])):
        pneumothorax = next(f for f in read["findings"] if f["code"] == "PNEUMOTHORAX")
        assert pneumothorax["positive"] and not pneumothorax["drives_level"]
        assert read["triage"]["level"] == "routine"

"""`preread evaluate` and the gate score an ECG model on what its read shows: for a card with a fusion head,
the network combined with each record's measurements (the card's thresholds were chosen on those), not the
network's probabilities alone; a card without a head is scored on the network, as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.ecg.readers import read_wfdb
from datasets.ecg.validate import validate_record
from evaluation.datasets import load_eval_dataset
from evaluation.evaluate import dataset_scores, predict, run_evaluate
from evaluation.metrics import auroc
from models.ecg.fusion import FusionHead, feature_names
from models.ecg.pipeline import EcgInput, EcgPreReader, measure_and_check
from models.ecg.served_scores import measure_ecg_files, served_scores
from models.registry import ModelRegistry
from tests.conftest import REPO_ROOT

RULES = REPO_ROOT / "configs" / "triage" / "ecg.yaml"


def _test_head(labels: list[str], record_file: Path) -> FusionHead:
    """A head (not a model) whose measurement logits rise with the heart rate and fall with the QRS width,
    half the weight on the network: fused and network probabilities differ on every real ECG."""
    measured, _ = measure_and_check(_served_input(record_file))
    names = feature_names(measured)
    rate, qrs = names.index("heart_rate_bpm"), names.index("qrs_duration_ms")
    coef = np.zeros((len(labels), len(names)))
    coef[:, rate], coef[:, qrs] = 1.0, -0.5
    return FusionHead(
        labels=labels,
        features=names,
        fill=[0.0] * len(names),
        mean=[70.0 if i == rate else 100.0 if i == qrs else 0.0 for i in range(len(names))],
        scale=[15.0] * len(names),
        coef=coef.tolist(),
        intercept=[0.3] * len(labels),
        network_weight=[0.5] * len(labels),
    )


def _served_input(file: str | Path) -> EcgInput:
    """An upload as serving hands it to the read (serving/ingest/ecg.py: float32 signals)."""
    record = validate_record(read_wfdb(file))
    return EcgInput(np.asarray(record.signals, dtype=np.float32), float(record.sampling_rate))


@pytest.fixture(scope="module")
def registry(tiny_registry, cinc_dir, tmp_path_factory) -> ModelRegistry:
    """ecg/1 of the tiny registry twice: ``plain`` (no head) and ``fused`` (its card with a test head)."""
    source = ModelRegistry(tiny_registry).resolve("ecg/1")
    out = ModelRegistry(tmp_path_factory.mktemp("served-scores") / "registry")
    head = _test_head(list(source.card.labels), sorted(cinc_dir.glob("*.hea"))[0])
    out.register("plain", source.path, source.card)
    out.register("fused", source.path, source.card.model_copy(update={"fusion": head.model_dump()}))
    return out


def _read_probabilities(registry: ModelRegistry, ref: str, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """([n, L] the probabilities the read's findings carry (the network's number where a rule re-stated
    a finding), [n] whether the read could read the ECG)."""
    reader = EcgPreReader.from_registry(registry, ref, RULES)
    reads = reader.read_batch([_served_input(f) for f in files])
    P = np.array(
        [
            [f.network_probability if f.network_probability is not None else f.probability for f in read.findings]
            for read in reads
        ]
    )
    return P, np.array([read.quality.acceptable for read in reads])


def test_a_fused_card_is_scored_as_its_read(registry, cinc_dir):
    model = registry.resolve("fused/1")
    dataset = load_eval_dataset(f"cinc:{cinc_dir}?limit=10", model.card)
    scores = dataset_scores(model, dataset, "onnxruntime")
    read, readable = _read_probabilities(registry, "fused/1", list(dataset.meta["file"]))
    assert readable.sum() >= 5
    # the read's probabilities (rounded to 4 places; float32 signals as serving passes them)
    assert np.allclose(scores[readable], read[readable], atol=2e-3)
    assert (scores[~readable] == 0).all()  # "repeat the ECG": the read calls no finding
    network = predict(model, dataset.inputs)
    assert np.abs(scores[readable] - network[readable]).max() > 0.05  # the network alone is not what is read


def test_a_card_without_fusion_is_scored_on_its_network(registry, cinc_dir):
    model = registry.resolve("plain/1")
    dataset = load_eval_dataset(f"cinc:{cinc_dir}?limit=10", model.card)
    scores = dataset_scores(model, dataset, "onnxruntime")
    assert np.array_equal(scores, predict(model, dataset.inputs))
    assert dataset.measured is None  # no measurement pass
    read, readable = _read_probabilities(registry, "plain/1", list(dataset.meta["file"]))
    assert np.allclose(scores[readable], read[readable], atol=2e-3)


def test_evaluate_and_gate_use_the_fused_scores(registry, cinc_dir):
    data = f"cinc:{cinc_dir}"
    fused = run_evaluate(
        "fused/1", data, registry_root=str(registry.root), n_boot=20, champion_ref="plain/1", track=False
    )
    plain = run_evaluate("plain/1", data, registry_root=str(registry.root), n_boot=20, track=False)
    model = registry.resolve("fused/1")
    dataset = load_eval_dataset(data, model.card)
    expected = served_scores(model.card, predict(model, dataset.inputs), measure_ecg_files(dataset.meta["file"]))
    changed = 0
    for j, code in enumerate(fused["labels"]):
        known = ~np.isnan(dataset.Y[:, j])
        expected_auroc = auroc(dataset.Y[known, j], expected[known, j], warn=False)
        assert fused["per_label"][code]["auroc"] == pytest.approx(expected_auroc, nan_ok=True)
        changed += abs(fused["per_label"][code]["auroc"] - plain["per_label"][code]["auroc"]) > 1e-6
    assert changed  # the fused and the plain model are the same network: only the head tells them apart
    assert any(note.startswith("fused/1: scored as its read shows it") for note in fused["notes"])
    assert not any("scored as its read" in note for note in plain["notes"])
    gate = fused["gate"]
    assert (gate["champion"], gate["challenger"]) == ("plain/1", "fused/1")

"""Training from the real layouts (datasets.sources): PTB-XL with its split rules and label sets, the
CinC 2021 records, NIH's Data_Entry layout; masked loss for unknown labels; augmentation; serving a
model trained on another label set."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from models.registry import ModelRegistry
from tests.datasets.layouts import ptbxl_fold
from tests.training.conftest import tiny_ecg_config
from training.ecg import load_ecg_training_data, train_ecg

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "configs" / "triage" / "ecg.yaml"


def ptbxl_config(root: Path, ptbxl_root: Path, **data):
    return tiny_ecg_config(
        root,
        epochs=2,
        data={"format": "ptbxl", "path": str(ptbxl_root), "label_set": "superdiagnostic", "sampling_rate": 100, **data},
    )


def test_ptbxl_split_rules_put_each_fold_where_it_belongs(ptbxl_root, tmp_path):
    data = load_ecg_training_data(ptbxl_config(tmp_path, ptbxl_root))
    ids = data.split_ids
    # strat_fold 1-8 train (record 7 has no superdiagnostic label: dropped), 9 validation, 10 test;
    # val_fraction plays no part when the layout has its own split.
    assert {ptbxl_fold(int(i)) for i in ids["train"]} == set(range(1, 9)) and "7" not in ids["train"]
    assert len(ids["train"]) == 15 and ids["val"] == ["17", "18"] and ids["test"] == ["19", "20"]
    assert data.labels == ["CD", "HYP", "MI", "NORM", "STTC"] and data.label_set == "superdiagnostic"
    assert data.X_train.shape == (15, 12, 5000) and data.X_test.shape == (2, 12, 5000)
    assert data.Y_val.tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]  # AMI → MI; LAO/LAE → HYP


def test_ptbxl_training_registers_its_label_set_and_serving_refuses_unweighted_labels(ptbxl_root, tmp_path):
    from models.ecg.pipeline import EcgPreReader

    registry = ModelRegistry(tmp_path / "registry")
    registered = train_ecg(ptbxl_config(tmp_path, ptbxl_root), registry=registry, progress=False)
    card = registered.card
    assert card.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert card.label_names[card.labels.index("MI")] == "Myocardial infarction"
    assert set(card.thresholds) == set(card.labels) and card.demo is False
    assert card.training_data.source == "ptbxl:superdiagnostic"
    assert (card.training_data.n_train, card.training_data.n_val, card.training_data.n_test) == (15, 2, 2)
    assert "test_macro_auroc" in card.metrics and card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert "triage rules must weigh" in card.intended_use

    # preread evaluate reads the same label set from the card (fold 10 by default).
    from evaluation.datasets import load_eval_dataset

    evaluation = load_eval_dataset(f"ptbxl:{ptbxl_root}?rate=100", card)
    assert evaluation.labels == card.labels and list(evaluation.meta["id"]) == ["19", "20"]
    assert evaluation.Y.tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 1, 0]]  # NST_ → STTC; NORM

    # Serving it with triage rules that do not weigh its labels would put an MI in "routine": refused at
    # load time. (The default ECG rules weigh the PTB-XL superclasses.)
    import re

    unweighted = re.sub(r"(?m)^  (MI|STTC|CD|HYP):.*\n", "", TRIAGE.read_text())
    (tmp_path / "unweighted-triage.yaml").write_text(unweighted)
    with pytest.raises(ValueError, match="CD, HYP, MI, STTC.*finding_weights"):
        EcgPreReader.from_registry(registry.root, registered.ref, tmp_path / "unweighted-triage.yaml")
    reader = EcgPreReader.from_registry(registry.root, registered.ref, TRIAGE)
    from datasets.ecg.readers import read_wfdb
    from models.ecg.pipeline import EcgInput

    record = read_wfdb(ptbxl_root / "records500" / "00000" / "00001_hr").in_standard_order()
    read = reader.read_batch([EcgInput(record.signals, record.sampling_rate)])[0]
    assert [f.code for f in read.findings] == card.labels and read.triage.level in ("critical", "urgent", "routine")


def test_cinc2021_records_train_end_to_end(cinc_dir, tmp_path):
    config = tiny_ecg_config(tmp_path, epochs=1, data={"format": "cinc", "path": str(cinc_dir), "val_fraction": 0.3})
    registered = train_ecg(config, registry=ModelRegistry(tmp_path / "registry"), progress=False)
    card = registered.card
    assert card.training_data.n_train + card.training_data.n_val == 30 and card.training_data.n_test is None
    assert card.training_data.source == "cinc" and card.demo is False and "Not a diagnosis" in card.intended_use
    assert card.metrics["data_counts"] == {
        "cinc_train": card.training_data.n_train,
        "cinc_val": card.training_data.n_val,
    }


def test_nih_data_entry_layout_trains_with_the_official_test_list(nih_csv_root, tmp_path):
    from tests.training.test_train_cxr import tiny_cxr_config
    from training.cxr import train_cxr

    config = tiny_cxr_config(
        tmp_path, data={"source": "nih", "path": str(nih_csv_root), "n": None}, optim={"epochs": 1}
    )
    registered = train_cxr(config, registry=ModelRegistry(tmp_path / "registry"), progress=False)
    card = registered.card
    tests = (nih_csv_root / "test_list.txt").read_text().split()
    assert card.training_data.n_test == len(tests) and "test_macro_auroc" in card.metrics
    assert card.demo is False and card.metrics["data_counts"]["nih_test"] == len(tests)
    assert card.training_data.n_train + card.training_data.n_val + len(tests) == 16


def test_unknown_labels_are_masked_out_of_the_loss():
    from training.loop import MaskedBCE, class_pos_weight

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.7, -2.0]])
    targets = torch.tensor([[1.0, float("nan"), 0.0], [0.0, 1.0, float("nan")]])
    Y = targets.numpy()
    weight = class_pos_weight(Y, torch.device("cpu"))
    assert weight.tolist() == [1.0, 1.0, 1.0]  # one known positive / negative per label
    masked = MaskedBCE(weight, masked=True)(logits, targets)
    known = ~torch.isnan(targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert torch.isclose(masked, expected)
    # The unknown cells' logits get no gradient.
    logits.requires_grad_(True)
    MaskedBCE(weight, masked=True)(logits, targets).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 2] == 0 and logits.grad[0, 0] != 0
    full = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert torch.equal(MaskedBCE(weight, masked=True)(logits, full), MaskedBCE(weight, masked=False)(logits, full))


def test_ecg_augmentation_is_applied_in_training(tmp_path):
    def weights(augment: bool):
        config = tiny_ecg_config(tmp_path / str(augment), epochs=1, augment={"enabled": augment})
        registered = train_ecg(config, registry=ModelRegistry(tmp_path / f"reg-{augment}"), progress=False)
        return torch.load(registered.state_dict_path, weights_only=True)

    plain, augmented = weights(False), weights(True)
    assert any(not torch.equal(plain[k], augmented[k]) for k in plain if plain[k].is_floating_point())


def test_replica_shards_are_disjoint_and_even():
    from training.common import Replica

    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    shards = [Replica(rank, 4).shard(order) for rank in range(4)]
    assert {len(s) for s in shards} == {6}  # 23 padded to 24
    flat = torch.cat(shards).tolist()
    assert set(flat) == set(range(23)) and len(flat) - len(set(flat)) == 1  # only the padding repeats
    assert torch.equal(Replica().shard(order), order)


def worker_cpus(ray) -> float:
    """CPU per worker that fits in what the (possibly shared) Ray instance has free, at most 0.5."""
    free = ray.available_resources().get("CPU", 0.0)
    if free < 0.2:
        pytest.skip(f"the running Ray instance has {free:g} CPU free; two training workers need 0.2")
    return round(min(0.5, free / 2 * 0.9), 2)


@pytest.mark.ray
def test_two_ray_train_workers_train_and_rank_0_registers_once(local_ray, tmp_path):
    from training.distributed import storage_path, train

    config = tiny_ecg_config(
        tmp_path, epochs=2, distributed={"num_workers": 2, "resources_per_worker": {"CPU": worker_cpus(local_ray)}}
    )
    registry = ModelRegistry(tmp_path / "registry")
    registered = train(config, registry=registry, progress=False)
    assert registered.ref == "ecg/1" and [m.version for m in registry.versions("ecg")] == [1]
    run = registered.card.metrics["distributed"]
    assert run["world_size"] == 2 and run["backend"] == "gloo" and run["n_train"] == 28
    assert [r["rank"] for r in run["ranks"]] == [0, 1]
    assert all(r["samples"] == 28 and r["epochs"] == 2 for r in run["ranks"])  # 14 a rank × 2 epochs
    assert run["first_epoch_covered"] == 28 and run["first_epoch_total"] == 28  # disjoint halves of one permutation
    assert registered.card.metrics["epochs_run"] == 2 and registered.card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert any(storage_path(config).rglob("last.pt"))  # Ray Train checkpoints


def record_epoch(path: Path, epoch: int, metrics: dict) -> None:
    """An on_epoch_end callback that works across processes (it runs in the rank-0 worker)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{epoch}\n")


@pytest.mark.ray
@pytest.mark.slow
def test_interrupted_ray_train_run_resumes_from_its_checkpoint_to_the_same_weights(local_ray, tmp_path):
    from training.distributed import train

    cpus = worker_cpus(local_ray)

    def config(root):
        return tiny_ecg_config(root, epochs=3, distributed={"num_workers": 2, "resources_per_worker": {"CPU": cpus}})

    straight = train(config(tmp_path / "straight"), registry=ModelRegistry(tmp_path / "reg-straight"), progress=False)

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 0:
            raise RuntimeError("interrupted")

    registry = ModelRegistry(tmp_path / "reg-resumed")
    with pytest.raises(RuntimeError, match="distributed training failed"):
        train(config(tmp_path / "resumed"), registry=registry, progress=False, on_epoch_end=stop_after_first_epoch)
    assert registry.is_empty("ecg")
    epochs_file = tmp_path / "epochs.txt"
    resumed = train(
        config(tmp_path / "resumed"),
        registry=registry,
        progress=False,
        resume=True,
        on_epoch_end=functools.partial(record_epoch, epochs_file),
    )
    assert epochs_file.read_text().split() == ["1", "2"]  # it continued after epoch 1, not from scratch
    a = torch.load(straight.state_dict_path, weights_only=True)
    b = torch.load(resumed.state_dict_path, weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.card.metrics["history"] == resumed.card.metrics["history"]
    assert np.isclose(straight.card.metrics["val_macro_auroc"], resumed.card.metrics["val_macro_auroc"])

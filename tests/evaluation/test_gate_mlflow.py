"""The promotion gate and per-site thresholds on the MLflow registry: the decision and its evidence
are kept with the challenger's version (a version tag + an artifact of its run), and the alias
moves only when the gate passes."""

from __future__ import annotations

import json
import shutil

from models.registry import MODEL_FILES, ModelRegistry, open_registry
from preread.cli import main
from tests.mlflow_store import new_mlflow_store


def test_gate_and_site_thresholds_are_stored_in_mlflow(tiny_registry, cinc_dir, tmp_path):
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path / "mlflow")
    registry = open_registry(uri)
    for source in ModelRegistry(tiny_registry).versions("ecg"):
        files = tmp_path / f"v{source.version}"  # the model files only (other tests add evidence to these)
        files.mkdir()
        for name in MODEL_FILES:
            shutil.copyfile(source.path / name, files / name)
        registered = registry.register("ecg", files, source.card)
        for alias in source.aliases:
            registry.set_alias("ecg", alias, registered.version)
    # a gate no version can pass (every label needs 1,000 cases; undefined labels block): a known "no"
    gate = tmp_path / "gate.yaml"
    gate.write_text("n_boot: 50\nmin_cases_per_class: 1000\nundefined_labels: block\n")

    code = main(
        [
            "models",
            "--registry",
            uri,
            "promote",
            "ecg/2",
            "--gate",
            "--data",
            f"cinc:{cinc_dir}",
            "--gate-config",
            str(gate),
        ]
    )
    challenger = registry.resolve("ecg/2")
    evidence = json.loads(registry.evidence(challenger, "gate.json"))
    assert evidence["champion"] == "ecg/1" and evidence["challenger"] == "ecg/2"
    assert evidence["comparison"]["n_cases"] == 30
    assert evidence["passed"] is False and challenger.card.metrics["gate"]["passed"] is False
    assert code != 0
    assert registry.aliases("ecg")["champion"] == 1
    tags = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("ecg", "2").tags
    assert json.loads(tags["preread.metrics.gate"])["passed"] is False, "visible in the MLflow UI"
    assert tags["preread.evidence.gate.json"] == "evidence/ecg-v2/gate.json"
    assert not (challenger.path / "gate.json").exists(), "a downloaded version is never modified"

    code = main(
        [
            "evaluate",
            "--model",
            "ecg/1",
            "--data",
            f"cinc:{cinc_dir}?limit=12",
            "--registry",
            uri,
            "--n-boot",
            "20",
            "--site-sensitivity",
            "0.8",
            "--write-site-thresholds",
            "--min-pos",
            "1",
        ]
    )
    assert code == 0
    sites = registry.resolve("ecg/1").card.metrics["site_thresholds"]["sites"]
    assert sites and all(isinstance(per_label, dict) for per_label in sites.values())

    # that evaluation is an MLflow run beside the training runs, linked from the version
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("preread-ecg").experiment_id], "tags.`preread.kind` = 'evaluation'"
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["preread.model"] == "ecg/1" and run.info.status == "FINISHED"
    assert run.data.params["n_boot"] == "20" and run.data.params["data"].endswith("?limit=12")
    assert 0.0 <= run.data.metrics["macro_auroc"] <= 1.0
    assert (
        run.data.metrics["macro_auroc/ci_low"]
        <= run.data.metrics["macro_auroc"]
        <= run.data.metrics["macro_auroc/ci_high"]
    )
    assert "label/NORM/specificity" in run.data.metrics and "NORM/auroc/ci_low" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]
    version_tags = client.get_model_version("ecg", "1").tags
    assert run.info.run_id in {v for k, v in version_tags.items() if k.startswith("preread.evaluation.")}


def test_evaluation_report_is_tracked_with_the_run(tiny_registry, cinc_dir, tmp_path):
    from mlflow import MlflowClient

    uri = new_mlflow_store(tmp_path / "mlflow")
    registry = open_registry(uri)
    source = ModelRegistry(tiny_registry).resolve("ecg/1")
    files = tmp_path / "v1"
    files.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(source.path / name, files / name)
    registry.register("ecg", files, source.card)
    report = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                "ecg/1",
                "--data",
                f"cinc:{cinc_dir}?limit=10",
                "--registry",
                uri,
                "--n-boot",
                "20",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("preread-ecg").experiment_id], "tags.`preread.kind` = 'evaluation'"
    )
    stored = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/roc.png", "report/metrics.json"} <= stored
    # --no-track: no second run
    assert (
        main(
            [
                "evaluate",
                "--model",
                "ecg/1",
                "--data",
                f"cinc:{cinc_dir}?limit=10",
                "--registry",
                uri,
                "--n-boot",
                "20",
                "--no-track",
            ]
        )
        == 0
    )
    assert len(client.search_runs([run.info.experiment_id], "tags.`preread.kind` = 'evaluation'")) == 1

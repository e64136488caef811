"""`preread evaluate` end to end on tiny registered ECG models and the real CinC sample records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from preread.cli import main
from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def report_dir(tiny_registry, cinc_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code = main(
        [
            "evaluate",
            "--model",
            "ecg",
            "--data",
            f"cinc:{cinc_dir}",
            "--report",
            str(out),
            "--registry",
            str(tiny_registry),
            "--n-boot",
            "50",
            "--pdf",
            "--site-sensitivity",
            "0.8",
            "--min-pos",
            "2",
        ]
    )
    assert code == 0
    return out


def test_evaluate_writes_report(report_dir, tiny_registry):
    index = report_dir / "index.html"
    assert index.is_file()
    page = index.read_text()
    for image in ("roc.png", "pr.png", "reliability.png", "confusion.png"):
        assert f'src="{image}"' in page and (report_dir / image).stat().st_size > 1000
    assert "Subgroups" in page and "Georgia" in page and "PTB-XL" in page
    assert (report_dir / "report.pdf").read_bytes()[:4] == b"%PDF"
    result = json.loads((report_dir / "metrics.json").read_text())
    assert result["model"] == "ecg/1" and result["n_cases"] == 30 and result["n_boot"] == 50
    assert set(result["labels"]) == {"NORM", "AF", "STACH", "SBRAD", "STE", "WQRS", "PREM"}
    assert "macro_auroc" in result["headline"] and "challenge_score" in result["headline"]
    assert result["site_thresholds"]


def test_cli_default_bootstrap_is_at_least_1000():
    from preread.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "ecg", "--data", "cinc:/x"])
    assert args.n_boot >= 1000


def test_bad_data_spec_is_an_error(tiny_registry, capsys):
    assert main(["evaluate", "--model", "ecg", "--data", "nope:/x", "--registry", str(tiny_registry)]) == 2
    assert "FORMAT" in capsys.readouterr().err
    assert main(["evaluate", "--model", "ecg/9", "--data", "cinc:/x", "--registry", str(tiny_registry)]) == 2


def test_site_thresholds_written_to_card(tiny_registry, cinc_dir, tmp_path):
    from models.registry import ModelRegistry

    registry_root = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry_root)
    code = main(
        [
            "evaluate",
            "--model",
            "ecg/1",
            "--data",
            f"cinc:{cinc_dir}?limit=12",
            "--registry",
            str(registry_root),
            "--n-boot",
            "20",
            "--site-sensitivity",
            "0.9",
            "--write-site-thresholds",
            "--min-pos",
            "1",
        ]
    )
    assert code == 0
    card = ModelRegistry(registry_root).resolve("ecg/1").card
    sites = card.metrics["site_thresholds"]["sites"]
    assert set(sites) <= {"Georgia", "PTB-XL"} and sites
    assert card.thresholds  # untouched


def test_promote_with_gate_on_real_models(tiny_registry, cinc_dir, tmp_path):
    """Two tiny real models on the 30 real records, each case with its known outcome: a gate that no
    version can pass (every label needs 1,000 cases and undefined labels block) refuses ecg/2, exits
    non-zero and leaves the alias; a challenger identical to the champion (the non-inferiority bound is
    exactly 0) passes, exits 0 and takes the alias. The decision and evidence are stored with it."""
    from models.registry import MODEL_FILES, ModelRegistry

    registry_root = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry_root)
    blocking, gate = tmp_path / "blocking.yaml", tmp_path / "gate.yaml"
    blocking.write_text("n_boot: 50\nmin_cases_per_class: 1000\nundefined_labels: block\n")
    gate.write_text("n_boot: 100\ncritical_findings: {ecg: [STE]}\n")

    code = main(
        [
            "models",
            "--registry",
            str(registry_root),
            "promote",
            "ecg/2",
            "--gate",
            "--data",
            f"cinc:{cinc_dir}",
            "--gate-config",
            str(blocking),
        ]
    )
    registry = ModelRegistry(registry_root)
    evidence = json.loads((registry.resolve("ecg/2").path / "gate.json").read_text())
    assert evidence["champion"] == "ecg/1" and evidence["challenger"] == "ecg/2"
    assert evidence["comparison"]["n_cases"] == 30
    assert evidence["passed"] is False and code != 0
    assert registry.resolve("ecg/2").card.metrics["gate"]["passed"] is False
    assert registry.aliases("ecg")["champion"] == 1

    champion = registry.resolve("ecg/1")
    twin = tmp_path / "twin"
    twin.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(champion.path / name, twin / name)
    twin_version = registry.register("ecg", twin, champion.card).version
    code = main(
        [
            "models",
            "--registry",
            str(registry_root),
            "promote",
            f"ecg/{twin_version}",
            "--gate",
            "--data",
            f"cinc:{cinc_dir}",
            "--gate-config",
            str(gate),
        ]
    )
    assert code == 0
    assert json.loads((registry.resolve(f"ecg/{twin_version}").path / "gate.json").read_text())["passed"] is True
    assert registry.aliases("ecg")["champion"] == twin_version
    # identical scores: the non-inferiority bound is exactly 0 → passes
    from evaluation.datasets import load_eval_dataset
    from evaluation.evaluate import run_gate

    model = registry.resolve("ecg/1")
    decision = run_gate(
        registry, "ecg/1", model, load_eval_dataset(f"cinc:{cinc_dir}?limit=10", model.card), gate_config=str(gate)
    )
    assert decision["passed"]


@pytest.mark.browser
def test_report_opens_in_headless_chromium(report_dir, chromium):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "evaluation-report.png"
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto((report_dir / "index.html").as_uri())
        assert "Evaluation of ecg/1" in page.title()
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
        assert len(images) == 4 and all(width > 0 for _, width in images), images
        assert page.locator("h2", has_text="Subgroups").count() == 1
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.stat().st_size > 10_000


def test_evaluate_with_champion_records_gate_in_report(tiny_registry, cinc_dir, tmp_path):
    from models.registry import ModelRegistry

    registry_root = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry_root)
    gate = tmp_path / "gate.yaml"
    gate.write_text("n_boot: 50\nrule: significant_drop\n")
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--model",
            "ecg@challenger",
            "--champion",
            "ecg@champion",
            "--record-gate",
            "--gate-config",
            str(gate),
            "--data",
            f"cinc:{cinc_dir}?limit=12",
            "--registry",
            str(registry_root),
            "--report",
            str(out),
            "--n-boot",
            "20",
        ]
    )
    result = json.loads((out / "metrics.json").read_text())
    assert code == (0 if result["gate"]["passed"] else 1)
    assert "Promotion gate" in (out / "index.html").read_text()
    stored = json.loads((ModelRegistry(registry_root).resolve("ecg/2").path / "gate.json").read_text())
    assert stored["config"]["rule"] == "significant_drop" and stored["passed"] == result["gate"]["passed"]

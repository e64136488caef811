from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES, ECG_LABELS
from evaluation.datasets import load_eval_dataset, parse_data_spec, signed_reads_to_dataset


def _ecg_card():
    from models.card import InputSpec, ModelCard, TrainingData

    return ModelCard(
        name="ecg",
        task="ecg",
        architecture="xresnet1d18",
        labels=list(ECG_LABEL_CODES),
        label_names=[label.name for label in ECG_LABELS],
        input=InputSpec(shape=[None, 12, 5000], preprocessing="datasets.ecg.transforms.ecg_preprocess"),
        training_data=TrainingData(description="t", n_train=1, n_val=0, fingerprint_sha256="0" * 64),
        intended_use="test",
    )


def _cxr_card(size=32):
    from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES, CXR_LABEL_NAMES
    from models.card import InputSpec, ModelCard, TrainingData

    return ModelCard(
        name="cxr",
        task="cxr",
        architecture="densenet121",
        labels=list(CXR_LABEL_CODES),
        label_names=list(CXR_LABEL_NAMES),
        input=InputSpec(shape=[None, 3, size, size], preprocessing="datasets.imaging.transforms.cxr_preprocess"),
        training_data=TrainingData(description="t", n_train=1, n_val=0, fingerprint_sha256="0" * 64),
        intended_use="test",
    )


def test_parse_data_spec():
    assert parse_data_spec("cinc:/a/b?limit=3") == ("cinc", Path("/a/b"), {"limit": "3"})
    with pytest.raises(ValueError, match="FORMAT"):
        parse_data_spec("/a/b")


def test_cinc_adapter_real_records(cinc_dir):
    data = load_eval_dataset(f"cinc:{cinc_dir}?limit=6", _ecg_card())
    assert data.inputs.shape == (6, 12, 5000) and data.Y.shape == (6, 7)
    assert set(data.meta["site"]) <= {"Georgia", "PTB-XL"}
    assert data.meta["sex"].notna().all() and data.meta["age"].notna().all()
    assert not np.isnan(data.Y).any()


def test_ptbxl_adapter_uses_fold_10(cinc_dir, tmp_path):
    folder = tmp_path / "records500" / "00000"
    folder.mkdir(parents=True)
    headers = sorted(cinc_dir.glob("HR*.hea"))[:3]
    rows = ["ecg_id,patient_id,age,sex,site,device,scp_codes,strat_fold,filename_lr,filename_hr"]
    for i, header in enumerate(headers, start=1):
        for suffix in (".hea", ".mat"):
            shutil.copy(header.with_suffix(suffix), folder / header.with_suffix(suffix).name)
        codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'AFIB': 100.0, 'CLBBB': 50.0}", "{'STACH': 100.0}"][i - 1]
        fold = 10 if i < 3 else 1
        rows.append(f'{i},{i},{50 + i},{i % 2},{i},CS-12,"{codes}",{fold},x,records500/00000/{header.stem}')
    (tmp_path / "ptbxl_database.csv").write_text("\n".join(rows) + "\n")
    data = load_eval_dataset(f"ptbxl:{tmp_path}", _ecg_card())
    assert len(data) == 2
    labels = list(ECG_LABEL_CODES)
    assert data.Y[0, labels.index("NORM")] == 1 and data.Y[0].sum() == 1
    assert data.Y[1, labels.index("AF")] == 1 and data.Y[1, labels.index("WQRS")] == 1
    assert list(data.meta["sex"]) == ["female", "male"] and set(data.meta["manufacturer"]) == {"CS-12"}


def test_nih_class_folders(nih_dir):
    data = load_eval_dataset(f"nih:{nih_dir}?limit=50", _cxr_card())
    from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES

    pneumonia = list(CXR_LABEL_CODES).index("PNEUMONIA")
    assert len(data) == 40 and data.inputs.shape == (40, 3, 32, 32)
    assert data.Y[:, pneumonia].sum() == 20 and not np.isnan(data.Y[:, pneumonia]).any()
    effusion = list(CXR_LABEL_CODES).index("EFFUSION")
    assert np.isnan(data.Y[:, effusion]).sum() == 20  # unknown in the Pneumonia folder


def test_nih_csv_and_chexpert_and_medmnist(nih_dir, tmp_path):
    from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES

    images = sorted((nih_dir / "Pneumonia").glob("*.png"))[:2] + sorted((nih_dir / "No_findings").glob("*.png"))[:1]
    (tmp_path / "img").mkdir()
    for image in images:
        shutil.copy(image, tmp_path / "img" / image.name)
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Patient Age,Patient Gender,View Position\n"
        f"{images[0].name},Pneumonia|Effusion,40,M,PA\n"
        f"{images[1].name},Pneumonia,61,F,AP\n"
        f"{images[2].name},No Finding,30,F,PA\n"
    )
    card = _cxr_card()
    data = load_eval_dataset(f"nih:{tmp_path}", card)
    codes = list(CXR_LABEL_CODES)
    assert data.Y[0, codes.index("EFFUSION")] == 1 and data.Y[2].sum() == 0 and not np.isnan(data.Y).any()
    # CheXpert: uncertain policy
    (tmp_path / "valid.csv").write_text(
        "Path,Sex,Age,Pneumonia,Pleural Effusion,Edema\n"
        f"img/{images[0].name},Male,40,1.0,-1.0,\nimg/{images[1].name},Female,61,0.0,1.0,-1.0\n"
    )
    for policy, expected in (("ones", 1.0), ("zeros", 0.0)):
        chex = load_eval_dataset(f"chexpert:{tmp_path / 'valid.csv'}?uncertain={policy}", card)
        assert chex.Y[0, codes.index("EFFUSION")] == expected
    chex = load_eval_dataset(f"chexpert:{tmp_path / 'valid.csv'}", card)
    assert np.isnan(chex.Y[0, codes.index("EFFUSION")]) and chex.Y[0, codes.index("EDEMA")] == 0
    assert np.isnan(chex.Y[:, codes.index("HERNIA")]).all()
    # MedMNIST npz
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "chest.npz",
        test_images=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 2, (4, len(codes))),
    )
    med = load_eval_dataset(f"medmnist:{tmp_path / 'chest.npz'}", card)
    assert med.inputs.shape == (4, 3, 32, 32) and med.Y.shape == (4, len(codes))


def _read(probabilities: dict[str, float]) -> dict:
    return {
        "findings": [
            {"code": c, "name": c, "probability": p, "threshold": 0.5, "positive": p >= 0.5}
            for c, p in probabilities.items()
        ],
        "triage": {"level": "routine", "score": 0.2},
    }


def test_worklist_export(tmp_path):
    labels = list(ECG_LABEL_CODES)
    reads = [
        {
            "study_uid": f"1.2.{i}",
            "site": "demo",
            "model_name": "ecg",
            "ai_read": _read({c: (0.9 if (c == "AF") == (i % 2 == 0) else 0.1) for c in labels}),
            "final_findings": {"findings": ["AF"] if i % 2 == 0 else ["NORM"]},
        }
        for i in range(10)
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(reads))
    data = load_eval_dataset(f"worklist:{path}", _ecg_card())
    assert data.scores.shape == (10, 7) and data.inputs is None
    assert data.Y[0, labels.index("AF")] == 1 and data.Y[1, labels.index("NORM")] == 1
    data2 = signed_reads_to_dataset([{**reads[0], "final_findings": {"AF": True, "NORM": False}}], labels)
    assert data2.Y[0, labels.index("AF")] == 1


@pytest.fixture
def worklist_db(tmp_path):
    from serving.store.db import Database
    from serving.store.schema import Correction, Study

    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    db = Database(url)
    db.migrate()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    rng = np.random.default_rng(0)
    with db.session() as session:
        for i in range(40):
            week = i // 20
            site = "a" if i % 2 else "b"
            truth = bool(rng.random() < 0.4)
            af_p = (0.8 if truth else 0.2) if week == 0 or site == "a" else 0.45  # site b degrades in week 2
            at = start + timedelta(days=7 * week, hours=i)
            session.add(
                Study(
                    study_uid=f"1.9.{i}",
                    site=site,
                    modality="ECG",
                    arrived_at=at,
                    status="signed",
                    patient_sex="F" if i % 3 else "M",
                    patient_age=f"{40 + i:03d}Y",
                    ai_read=_read({"AF": af_p, "NORM": 1 - af_p}),
                    updated_at=at,
                )
            )
            session.add(
                Correction(
                    study_uid=f"1.9.{i}",
                    signed_by="dr",
                    signed_at=at + timedelta(hours=1),
                    agree=True,
                    final_findings={"AF": truth, "NORM": not truth},
                    ai_findings={
                        "findings": {
                            "AF": {"probability": af_p, "positive": af_p >= 0.5},
                            "NORM": {"probability": 1 - af_p, "positive": af_p < 0.5},
                        },
                        "level": "routine",
                        "score": 0.2,
                    }
                    if i % 2
                    else None,
                    model_name="ecg",
                    model_version="1",
                )
            )
    return url


def test_monitoring_agreement_and_drift(worklist_db, tmp_path):
    from evaluation.monitoring import agreement_table, drift_table, plot_agreement, psi

    table = agreement_table(worklist_db, freq="W")
    af = table[table["finding"] == "AF"]
    assert set(af["site"]) == {"a", "b"} and af["n"].sum() == 40
    a = af[af["site"] == "a"]["agreement"].to_numpy()
    b = af[af["site"] == "b"]["agreement"].to_numpy()
    assert np.all(a == 1.0) and b[0] == 1.0 and b[1] < 1.0
    drift = drift_table(worklist_db, freq="W")
    b_af = drift[(drift["site"] == "b") & (drift["finding"] == "AF")].sort_values("period")
    assert b_af["psi"].iloc[0] == pytest.approx(0.0, abs=1e-9) and b_af["psi"].iloc[1] > 0.25
    assert drift["mean_age"].notna().all()
    png = plot_agreement(table, tmp_path / "agreement.png")
    assert png.stat().st_size > 1000
    assert psi(np.random.default_rng(0).normal(size=500), np.random.default_rng(1).normal(size=500)) < 0.1


def test_agreement_charts_drawn_in_threads_leave_pyplot_alone(tmp_path):
    """The service draws the chart in request threads: each draw is a Figure of its own, so parallel
    draws all come out whole and the process's pyplot backend is never switched under another user."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import matplotlib
    import pandas as pd
    from PIL import Image

    from evaluation.monitoring import plot_agreement

    periods = pd.date_range("2026-01-05", periods=6, freq="W")
    table = pd.DataFrame(
        [
            {"period": p, "site": site, "finding": code, "agreement": 0.5 + 0.05 * i, "n": 10}
            for i, p in enumerate(periods)
            for site in ("a", "b")
            for code in ("AF", "MI", "STACH", "PNEUMONIA")
        ]
    )
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend that cannot write PNG through pyplot's figure manager
    try:

        def draw(_):
            out = io.BytesIO()
            plot_agreement(table, out)
            return Image.open(io.BytesIO(out.getvalue())).size

        with ThreadPoolExecutor(4) as pool:
            sizes = list(pool.map(draw, range(8)))
        assert matplotlib.get_backend() == "svg", "drawing a chart switched the process's pyplot backend"
    finally:
        matplotlib.use(before)
    assert len(set(sizes)) == 1 and sizes[0][0] > 500, sizes


def test_monitoring_does_not_import_serving():
    import ast

    for path in (Path(__file__).resolve().parents[2] / "evaluation").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "serving" for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "serving", path


def test_dicom_folder_with_labels_csv(nih_dir, tmp_path):
    from datasets.imaging.wrap import wrap_png_as_dicom
    from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES

    pngs = sorted((nih_dir / "Pneumonia").glob("*.png"))[:2]
    lines = ["file,PNEUMONIA,site"]
    for i, png in enumerate(pngs):
        ds = wrap_png_as_dicom(png, patient_sex="F", patient_age="070Y")
        ds.Manufacturer = "ACME"
        ds.save_as(tmp_path / f"im{i}.dcm", write_like_original=False)
        lines.append(f"im{i}.dcm,{i},township-{i}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = load_eval_dataset(f"dicom:{tmp_path}", _cxr_card())
    codes = list(CXR_LABEL_CODES)
    assert data.inputs.shape == (2, 3, 32, 32)
    assert list(data.Y[:, codes.index("PNEUMONIA")]) == [0.0, 1.0] and np.isnan(data.Y[:, codes.index("MASS")]).all()
    assert list(data.meta["site"]) == ["township-0", "township-1"]
    assert set(data.meta["manufacturer"]) == {"ACME"} and set(data.meta["sex"]) == {"female"}
    assert list(data.meta["age"]) == [70.0, 70.0]


def test_evaluate_worklist_export_through_cli(tiny_registry, tmp_path):
    from preread.cli import main

    labels = list(ECG_LABEL_CODES)
    rng = np.random.default_rng(1)
    reads = []
    for i in range(40):
        truth = {c: bool(rng.random() < 0.3) for c in labels}
        reads.append(
            {
                "study_uid": f"1.3.{i}",
                "site": "demo" if i % 2 else "north",
                "model_name": "ecg",
                "patient_sex": "F",
                "patient_age": "050Y",
                "ai_read": _read({c: float(np.clip(0.5 * truth[c] + 0.5 * rng.random(), 0, 1)) for c in labels}),
                "final_findings": [c for c in labels if truth[c]],
            }
        )
    path = tmp_path / "signed.json"
    path.write_text(json.dumps(reads))
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                "ecg",
                "--data",
                f"worklist:{path}",
                "--registry",
                str(tiny_registry),
                "--report",
                str(out),
                "--n-boot",
                "30",
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert result["n_cases"] == 40 and result["headline"]["macro_auroc"]["value"] > 0.7


def test_worklist_signed_reads_export_shape(tmp_path):
    """The shape GET /api/v1/exports/signed-reads returns: {"rows": [...]}, ai_findings keyed by code,
    final_findings {code: bool}; an amendment replaces the earlier signature of the same study."""
    labels = list(ECG_LABEL_CODES)

    def row(study, af_final, amendment=False):
        return {
            "study": study,
            "site": "demo",
            "modality": "ECG",
            "patient_sex": "F",
            "patient_age_band": "60-69",
            "signed_month": "2026-01",
            "agree": True,
            "model_name": "ecg",
            "model_version": "1",
            "amendment": amendment,
            "ai_findings": {
                "findings": {c: {"probability": 0.7 if c == "AF" else 0.2, "positive": c == "AF"} for c in labels},
                "level": "critical",
                "score": 0.8,
            },
            "final_findings": {c: (c == "AF" and af_final) or (c == "NORM" and not af_final) for c in labels},
        }

    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            {
                "rows": [row("aa", True), row("bb", True), row("bb", False, amendment=True)],
                "count": 3,
                "deidentified": True,
            }
        )
    )
    data = load_eval_dataset(f"worklist:{path}", _ecg_card())
    assert len(data) == 2 and list(data.meta["id"]) == ["aa", "bb"]
    af = labels.index("AF")
    assert list(data.Y[:, af]) == [1.0, 0.0] and list(data.scores[:, af]) == [0.7, 0.7]
    assert list(data.meta["age_band"]) == ["60-69", "60-69"] and set(data.meta["sex"]) == {"female"}

"""Dataset adapters (datasets.sources) against fixtures written in each layout's real format."""

from __future__ import annotations

import ast
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from datasets.sources import SourceLayoutError, open_source
from datasets.sources.ptbxl import Statements
from datasets.sources.splits import assign_splits, split_by_patient
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from tests.datasets.layouts import CINC2020_RECORDS, PTBXL_SCP_CODES, ptbxl_fold

CXR = list(CXR_LABEL_CODES)


def column(dataset, code):
    return dataset.Y[:, dataset.labels.index(code)]


# -- PTB-XL -----------------------------------------------------------------------------------------


def test_ptbxl_superdiagnostic_labels_and_folds(ptbxl_root):
    data = open_source("ptbxl", ptbxl_root, label_set="superdiagnostic", sampling_rate=100)
    # The benchmark's aggregation: diagnostic statements → diagnostic_class, any likelihood;
    # record 7 (rhythm + form statements only) has no superdiagnostic label and is dropped.
    assert data.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert data.label_names[data.labels.index("MI")] == "Myocardial infarction"
    assert len(data) == 19 and "7" not in data.ids
    by_id = dict(zip(data.ids, data.Y))
    assert list(by_id["2"]) == [0, 0, 1, 0, 0]  # IMI → MI
    assert list(by_id["8"]) == [1, 0, 1, 0, 0]  # ASMI at likelihood 15 still counts; IRBBB → CD
    assert list(by_id["4"]) == [0, 0, 0, 0, 1]  # ISC_ → STTC (AFIB is rhythm)
    assert list(by_id["5"]) == [0, 1, 0, 0, 0]  # LVH → HYP
    assert not np.isnan(data.Y).any()
    # strat_fold 1-8 train, 9 validation, 10 test
    for ecg_id, split in zip(data.ids, data.split):
        fold = ptbxl_fold(int(ecg_id))
        assert split == ("test" if fold == 10 else "val" if fold == 9 else "train"), (ecg_id, split)
    assert set(data.meta.loc[data.split == "test", "id"]) == {"19", "20"}
    assert data.meta.loc[data.meta["id"] == "5", "age"].item() == 90.0  # 300 = over 89
    assert set(data.meta["sex"]) == {"male", "female"} and "CS-12   E" in set(data.meta["manufacturer"])
    assert data.meta["file"].str.contains("records100/00000/").all()


def test_ptbxl_label_sets_follow_the_statement_table(ptbxl_root):
    statements = Statements(pd.read_csv(ptbxl_root / "scp_statements.csv", index_col=0))
    for label_set in ("diagnostic", "subdiagnostic", "form", "rhythm", "all"):
        data = open_source("ptbxl", ptbxl_root, label_set=label_set)
        expected = {str(i): statements.aggregate(codes, label_set) for i, codes in enumerate(PTBXL_SCP_CODES, 1)}
        kept = {i for i, labels in expected.items() if labels}
        assert set(data.ids) == kept, label_set
        assert data.labels == sorted(set().union(*expected.values())), label_set
        for ecg_id, row in zip(data.ids, data.Y):
            assert {code for code, v in zip(data.labels, row) if v == 1} == expected[ecg_id], (label_set, ecg_id)
    assert open_source("ptbxl", ptbxl_root, label_set="form").labels == sorted(
        {"ABQRS", "VCLVH", "LVOLT", "NDT", "PVC", "STD_", "QWAVE", "NST_"}
    )
    sub = open_source("ptbxl", ptbxl_root, label_set="subdiagnostic")
    assert "AMI" in sub.labels and "LAFB/LPFB" in sub.labels and "ASMI" not in sub.labels
    # A stricter likelihood drops the 15 % ASMI of record 8 (the only one) and the 35 % IMI of record 12.
    strict = open_source("ptbxl", ptbxl_root, label_set="diagnostic", min_likelihood=50)
    assert "ASMI" not in strict.labels and "IRBBB" in strict.labels
    assert column(strict, "IMI")[strict.ids.index("12")] == 0 and column(strict, "IMI")[strict.ids.index("2")] == 1


def test_ptbxl_preread_label_set_maps_onto_the_served_labels(ptbxl_root):
    data = open_source("ptbxl", ptbxl_root, label_set="preread")
    assert data.labels == list(ECG_LABEL_CODES) and len(data) == 20  # nothing dropped: zeros are real negatives
    row = dict(zip(data.ids, data.Y))
    assert row["4"][data.labels.index("AF")] == 1 and row["4"][data.labels.index("STE")] == 1
    assert row["6"][data.labels.index("WQRS")] == 1 and row["7"].sum() == 0


def test_ptbxl_records100_and_records500_give_the_same_input(ptbxl_root):
    low = open_source("ptbxl", ptbxl_root, sampling_rate=100).head(2)
    high = open_source("ptbxl", ptbxl_root, sampling_rate=500).head(2)
    assert high.meta["file"].str.contains("records500/00000/0000[12]_hr").all()
    X_low, _ = low.load_inputs()
    X_high, _ = high.load_inputs()
    assert X_low.shape == X_high.shape == (2, 12, 5000)
    # 100 Hz is the 500 Hz record decimated: after THE preprocessing (resampled to 500 Hz,
    # 0.5-45 Hz) the two inputs nearly coincide.
    correlation = np.corrcoef(X_low[:, 1].ravel(), X_high[:, 1].ravel())[0, 1]
    assert correlation > 0.97


def test_ptbxl_layout_errors_name_the_file_and_column(ptbxl_root, tmp_path):
    with pytest.raises(SourceLayoutError, match="no ptbxl_database.csv"):
        open_source("ptbxl", tmp_path)
    table = pd.read_csv(ptbxl_root / "ptbxl_database.csv")
    shutil.copy(ptbxl_root / "scp_statements.csv", tmp_path / "scp_statements.csv")
    table.drop(columns=["strat_fold"]).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(SourceLayoutError, match=r"ptbxl_database.csv lacks column\(s\) 'strat_fold'"):
        open_source("ptbxl", tmp_path)
    broken = table.copy()
    broken.loc[3, "strat_fold"] = 11
    broken.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(SourceLayoutError, match="ecg_id 4 has .11."):
        open_source("ptbxl", tmp_path)
    broken = table.copy()
    broken.loc[0, "scp_codes"] = "NORM=100"
    broken.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(SourceLayoutError, match="ecg_id 1: scp_codes"):
        open_source("ptbxl", tmp_path)
    with pytest.raises(ValueError, match="label_set must be one of"):
        open_source("ptbxl", ptbxl_root, label_set="superclass")
    with pytest.raises(ValueError, match="sampling_rate"):
        open_source("ptbxl", ptbxl_root, sampling_rate=250)


# -- PhysioNet/CinC ---------------------------------------------------------------------------------


def test_cinc2020_folder_sites_snomed_and_unknown_dx(cinc2020_root):
    data = open_source("cinc", cinc2020_root)
    assert sorted(data.ids) == sorted(name for name, _ in CINC2020_RECORDS)
    sites = dict(zip(data.ids, data.meta["site"]))
    assert sites == {
        "A0001": "CPSC",
        "A0002": "CPSC",
        "Q0001": "CPSC-Extra",
        "S0001": "PTB",
        "E00001": "Georgia",
        "E00002": "Georgia",
    }
    rows = dict(zip(data.ids, data.Y))
    code = data.labels.index
    assert rows["Q0001"][code("AF")] == 1 and rows["Q0001"][code("WQRS")] == 1  # 164889003, 59118001 (RBBB)
    assert rows["S0001"][code("STE")] == 1 and rows["A0002"][code("NORM")] == 1
    assert np.isnan(rows["E00002"]).all()  # "Dx: Unknown": unknown, not normal
    assert set(data.meta["sex"]) == {"male", "female"} and data.meta["age"].notna().all()
    snomed = open_source("cinc", cinc2020_root, label_set="snomed")
    assert snomed.labels[0] == "59118001" and snomed.label_names[0] == "right bundle branch block"
    X, loaded = data.load_inputs()
    assert X.shape == (6, 12, 5000)


def test_cinc_errors(tmp_path):
    with pytest.raises(SourceLayoutError, match=r"no WFDB headers \(\*.hea\)"):
        open_source("cinc", tmp_path)
    with pytest.raises(FileNotFoundError, match="cinc data not found"):
        open_source("cinc", tmp_path / "nope")


# -- NIH ChestX-ray14 -------------------------------------------------------------------------------


def test_nih_data_entry_csv_with_official_split(nih_csv_root):
    data = open_source("nih", nih_csv_root, image_size=32)
    assert len(data) == 16 and "99999999_000.png" not in data.ids  # listed but not downloaded
    assert any("not under" in note for note in data.notes)
    assert not np.isnan(data.Y).any()  # NIH labels are complete
    second = data.ids.index(sorted(data.ids)[1])
    assert column(data, "EFFUSION")[second] == 1 and column(data, "PNEUMONIA")[second] == 1
    assert column(data, "ANY").sum() == 8 and column(data, "PNEUMONIA").sum() == 8
    tests = set((nih_csv_root / "test_list.txt").read_text().split())
    assert set(np.asarray(data.ids)[data.split == "test"]) == tests and tests
    assert set(data.split) <= {"train", "test"}
    assert data.meta["view"].isin(["PA", "AP"]).all() and data.meta["age"].between(30, 50).all()
    splits = assign_splits(data, 0.3, seed=0)
    patients = {k: set(data.meta["patient_id"].iloc[v]) for k, v in splits.items()}
    assert len(splits["val"]) > 0 and not patients["train"] & patients["val"] and not patients["val"] & patients["test"]
    X, _ = data.head(2).load_inputs()
    assert X.shape == (2, 1, 32, 32)


def test_nih_class_folders_mark_unnamed_findings_unknown(nih_dir):
    data = open_source("nih", nih_dir)
    pneumonia = data.meta["stratum"] == "Pneumonia"
    assert len(data) == 40 and pneumonia.sum() == 20
    assert (column(data, "PNEUMONIA")[pneumonia] == 1).all() and (column(data, "ANY")[pneumonia] == 1).all()
    assert np.isnan(column(data, "EFFUSION")[pneumonia]).all()
    assert (data.Y[~pneumonia] == 0).all()


def test_nih_errors(nih_csv_root, tmp_path):
    with pytest.raises(SourceLayoutError, match="neither a Data_Entry_2017"):
        open_source("nih", tmp_path)
    shutil.copytree(nih_csv_root, tmp_path / "copy")
    csv = tmp_path / "copy" / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text().replace(",Pneumonia,", ",Pneumonai,", 1))
    with pytest.raises(SourceLayoutError, match="'Finding Labels'.*Pneumonai"):
        open_source("nih", tmp_path / "copy")
    (tmp_path / "folders" / "Pneumonai").mkdir(parents=True)
    shutil.copy(next(nih_csv_root.rglob("*.png")), tmp_path / "folders" / "Pneumonai" / "00000001_000.png")
    with pytest.raises(SourceLayoutError, match="class folder .*Pneumonai"):
        open_source("nih", tmp_path / "folders")


# -- CheXpert ---------------------------------------------------------------------------------------


def test_chexpert_policies_views_and_split(chexpert_root):
    data = open_source("chexpert", chexpert_root, image_size=32)
    train = pd.read_csv(chexpert_root / "train.csv")
    frontal = train[train["Frontal/Lateral"] == "Frontal"]
    assert len(data) == len(frontal) + 4 and set(data.meta["view"]) == {"Frontal"}
    assert list(data.split).count("val") == 4 and data.meta["patient_id"].str.fullmatch(r"patient\d{5}").all()
    uncertain = frontal["Pleural Effusion"].to_numpy() == -1
    effusion = column(data, "EFFUSION")[: len(frontal)]
    assert uncertain.any() and np.isnan(effusion[uncertain]).all()  # ignore (default): unknown
    assert (effusion[~uncertain] == 0).all()  # blank: not mentioned → 0
    assert np.isnan(column(data, "MASS")).all()  # not a CheXpert observation
    # ANY: a pathology (Pneumonia, Lung Opacity) → 1; "No Finding" → 0, whatever Support Devices says.
    no_finding = frontal["No Finding"].to_numpy() == 1
    assert (column(data, "ANY")[: len(frontal)][no_finding] == 0).all()
    assert (column(data, "ANY")[: len(frontal)][~no_finding] == 1).all()
    for policy, expected in (("ones", 1.0), ("zeros", 0.0)):
        other = open_source("chexpert", chexpert_root, uncertain=policy)
        assert (column(other, "EFFUSION")[: len(frontal)][uncertain] == expected).all()
    blank_unknown = open_source("chexpert", chexpert_root, unmentioned="ignore")
    assert np.isnan(column(blank_unknown, "ATELECTASIS")[: len(frontal)]).all()
    assert len(open_source("chexpert", chexpert_root, views="all")) == len(train) + 4
    X, loaded = data.head(3).load_inputs()
    assert X.shape == (3, 1, 32, 32)


def test_chexpert_errors(chexpert_root, tmp_path):
    bad = tmp_path / "train.csv"
    pd.read_csv(chexpert_root / "train.csv").assign(Edema=2.0).to_csv(bad, index=False)
    with pytest.raises(SourceLayoutError, match="row 2, column 'Edema': 2.0"):
        open_source("chexpert", bad)
    pd.read_csv(chexpert_root / "train.csv").drop(columns=["Path"]).to_csv(bad, index=False)
    with pytest.raises(SourceLayoutError, match="lacks column.*'Path'"):
        open_source("chexpert", bad)
    with pytest.raises(ValueError, match="uncertain policy"):
        open_source("chexpert", chexpert_root, uncertain="maybe")


# -- MedMNIST ---------------------------------------------------------------------------------------


def test_medmnist_chestmnist_splits_and_flavours(medmnist_file, tmp_path):
    data = open_source("medmnist", medmnist_file, image_size=32)
    assert len(data) == 20 and list(pd.Series(data.split).value_counts().sort_index()) == [4, 12, 4]
    stored = np.load(medmnist_file)
    labels = np.concatenate([stored[f"{s}_labels"] for s in ("train", "val", "test")])
    assert (data.Y[:, :14] == labels).all() and (column(data, "ANY") == labels.max(axis=1)).all()
    X, _ = data.head(2).load_inputs()
    assert X.shape == (2, 1, 32, 32)
    pneumonia_mnist = tmp_path / "pneumoniamnist.npz"
    np.savez(pneumonia_mnist, test_images=stored["test_images"], test_labels=np.array([[1], [0], [1], [0]]))
    binary = open_source("medmnist", pneumonia_mnist)
    assert list(column(binary, "PNEUMONIA")) == [1, 0, 1, 0]
    assert np.isnan(column(binary, "MASS")[0]) and column(binary, "MASS")[1] == 0
    np.savez(tmp_path / "bad.npz", test_images=stored["test_images"], test_labels=np.zeros((4, 3)))
    with pytest.raises(SourceLayoutError, match="3 label columns"):
        open_source("medmnist", tmp_path / "bad.npz")
    np.savez(tmp_path / "nolabels.npz", test_images=stored["test_images"])
    with pytest.raises(SourceLayoutError, match="no test_labels"):
        open_source("medmnist", tmp_path / "nolabels.npz")


# -- DICOM folder + labels.csv ----------------------------------------------------------------------


def test_dicom_folder_labels_meta_and_split(dicom_root):
    data = open_source("dicom", dicom_root, task="cxr", image_size=32)
    assert len(data) == 6 and list(data.split) == ["test"] + [None] * 5
    assert list(column(data, "PNEUMONIA")) == [1, 1, 1, 0, 0, 0]
    assert np.isnan(column(data, "EFFUSION")[:3]).all() and (column(data, "EFFUSION")[3:] == 0).all()
    assert np.isnan(column(data, "MASS")).all()  # no column: unknown
    assert set(data.meta["site"]) == {"Township clinic"} and set(data.meta["manufacturer"]) == {"ACME"}
    assert list(data.meta["patient_id"]) == [f"P{i}" for i in range(6)] and data.meta["age"].iloc[1] == 41
    X, _ = data.load_inputs()
    assert X.shape == (6, 1, 32, 32)


def test_dicom_folder_errors_and_ecg_waveforms(dicom_root, tmp_path):
    from pydicom.data import get_testdata_file

    shutil.copytree(dicom_root, tmp_path / "typo")
    csv = tmp_path / "typo" / "labels.csv"
    csv.write_text(csv.read_text().replace("PNEUMONIA", "PNEUMONA", 1))
    with pytest.raises(SourceLayoutError, match="'PNEUMONA' are neither label codes"):
        open_source("dicom", tmp_path / "typo", task="cxr")
    csv.write_text(csv.read_text().replace("PNEUMONA", "PNEUMONIA").replace(",1,,P0", ",yes,,P0"))
    with pytest.raises(SourceLayoutError, match="row 2, column 'PNEUMONIA': 'yes'"):
        open_source("dicom", tmp_path / "typo", task="cxr")
    (tmp_path / "ecg").mkdir()
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), tmp_path / "ecg" / "ecg.dcm")
    (tmp_path / "ecg" / "labels.csv").write_text("file,NORM,AF\necg.dcm,1,0\n")
    ecg = open_source("dicom", tmp_path / "ecg", task="ecg")
    X, _ = ecg.load_inputs()
    assert X.shape == (1, 12, 5000) and list(ecg.Y[0, :2]) == [1, 0] and np.isnan(ecg.Y[0, 2:]).all()


# -- worklist signed reads --------------------------------------------------------------------------


def _export_row(study, final, shown, file=None):
    row = {
        "study": study,
        "reader": "r1",
        "site": "demo",
        "modality": "ECG",
        "patient_sex": "M",
        "patient_age_band": "50-59",
        "signed_month": "2026-01",
        "agree": False,
        "model_name": "ecg",
        "model_version": "1",
        "amendment": False,
        "ai_findings": {"findings": {c: {"probability": 0.6, "positive": True} for c in shown}},
        "final_findings": final,
    }
    return {**row, **({"file": file} if file else {})}


def test_worklist_export_labels_and_inputs(tmp_path, cinc_dir):
    for suffix in (".hea", ".mat"):
        shutil.copy(cinc_dir / f"E07500{suffix}", tmp_path / f"E07500{suffix}")
    # Study b was read by a model showing only AF and NORM: the others are unknown, not absent.
    rows = [
        _export_row("a", {c: c == "AF" for c in ECG_LABEL_CODES}, ECG_LABEL_CODES, file="E07500.hea"),
        _export_row("b", ["NORM"], ["AF", "NORM"], file="E07500.hea"),
    ]
    path = tmp_path / "signed.json"
    path.write_text(json.dumps({"rows": rows, "count": 2, "deidentified": True}))
    data = open_source("worklist", path)
    assert data.task == "ecg" and data.ids == ["a", "b"]
    assert column(data, "AF")[0] == 1 and column(data, "NORM")[1] == 1 and column(data, "AF")[1] == 0
    assert np.isnan(column(data, "STE")[1]) and column(data, "STE")[0] == 0
    assert data.scores[0, 0] == pytest.approx(0.6) and list(data.meta["age_band"]) == ["50-59", "50-59"]
    X, _ = data.load_inputs()
    assert X.shape == (2, 12, 5000)
    # Without files (the plain de-identified export) there is nothing to train on, and it says so.
    path.write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k != "file"} for r in rows]}))
    with pytest.raises(SourceLayoutError, match="no signals or images.*'file'"):
        open_source("worklist", path).load_inputs()
    path.write_text(json.dumps({"reads_missing": []}))
    with pytest.raises(SourceLayoutError, match="without 'rows'"):
        open_source("worklist", path)


# -- splits, input loading ----------------------------------------------------------------------------


def test_split_by_patient_keeps_patients_whole_across_strata():
    groups = ["p1", "p1", "p2", "p3", "p4", "p5", "p6", "p1"]
    strata = ["A", "A", "A", "A", "B", "B", "B", "B"]  # p1 has cases in both strata
    for seed in range(20):
        train, val = split_by_patient(groups, strata, 0.4, seed)
        assert sorted(np.r_[train, val]) == list(range(8))
        assert not {groups[i] for i in train} & {groups[i] for i in val}, seed


def test_load_inputs_skips_unreadable_cases_and_caches(ptbxl_root, tmp_path):
    copy = tmp_path / "ptb"
    shutil.copytree(ptbxl_root, copy)
    (copy / "records500" / "00000" / "00003_hr.dat").write_bytes(b"\x00" * 10)  # truncated signal file
    data = open_source("ptbxl", copy, label_set="preread").head(4)
    with pytest.warns(UserWarning, match="skipped 1 of 4 cases"):
        X, loaded = data.load_inputs(cache_dir=tmp_path / "cache")
    assert loaded.ids == ["1", "2", "4"] and X.shape == (3, 12, 5000)
    shutil.rmtree(copy / "records500")  # the cache answers now, without the records
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X2, again = data.load_inputs(cache_dir=tmp_path / "cache")
    assert again.ids == loaded.ids and np.array_equal(X, X2)
    assert ast.literal_eval(loaded.meta["scp_codes"].iloc[0]) == PTBXL_SCP_CODES[0]

"""Dataset adapters for evaluation: ``FORMAT:PATH`` → reference labels, model inputs and case metadata.

Every adapter returns an :class:`EvalDataset` whose label columns are the *model card's* labels, in
card order. A label the source cannot say anything about for a case is NaN (unknown), never 0:
metrics skip unknown cells. Inputs go through THE preprocessing of datasets/ (the same code as
training and serving).

Formats
  cinc      PhysioNet/CinC 2020–2021 WFDB folder (``*.hea`` with ``# Dx:`` SNOMED codes)
  ptbxl     PTB-XL root: ptbxl_database.csv (+ scp_statements.csv), records100/ or records500/;
            test fold = strat_fold 10 (``ptbxl:PATH?fold=10&rate=500``)
  nih       ChestX-ray14: ``Data_Entry_2017*.csv`` + images (found anywhere under PATH), or the
            class-folder layout (PATH/<Finding>/*.png; No_findings / No Finding = all negative)
  chexpert  CheXpert CSV (Path + 14 observation columns); ``?uncertain=ones|zeros|ignore``
  medmnist  MedMNIST .npz (``?split=test``); labels in card order
  dicom     folder of DICOM files + labels.csv (``file`` column + one column per label code, optional
            site, sex, age, manufacturer)
  worklist  export of signed reads (JSON list or CSV): final findings are the reference; the AI's
            stored probabilities are the scores (no inference needed)

Query options after ``?`` (``cinc:/data/x?limit=10``): ``limit`` (all formats), format-specific keys.
"""

from __future__ import annotations

import ast
import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

FORMATS = ("cinc", "ptbxl", "nih", "chexpert", "medmnist", "dicom", "worklist")

# CinC record-name prefixes → source database (the "site" of a CinC case)
CINC_SOURCES = {"A": "CPSC", "Q": "CPSC-Extra", "I": "StPetersburg", "S": "PTB", "HR": "PTB-XL",
                "E": "Georgia", "JS": "Chapman-Ningbo"}

# PTB-XL SCP-ECG statements → our ECG label codes
PTBXL_TO_ECG = {
    "NORM": "NORM", "SR": None,
    "AFIB": "AF", "AFLT": "AF",
    "STACH": "STACH", "SBRAD": "SBRAD",
    "STE_": "STE", "INJAS": "STE", "INJAL": "STE", "INJIN": "STE", "INJLA": "STE", "INJIL": "STE",
    "ISCAL": "STE", "ISCIN": "STE", "ISCIL": "STE", "ISCAS": "STE", "ISCLA": "STE", "ISCAN": "STE",
    "ISC_": "STE", "AMI": "STE", "IMI": "STE",
    "CLBBB": "WQRS", "CRBBB": "WQRS", "LAFB": "WQRS", "IVCD": "WQRS", "1AVB": "WQRS", "2AVB": "WQRS",
    "3AVB": "WQRS",
    "PAC": "PREM", "PVC": "PREM", "BIGU": "PREM",
}

CHEXPERT_TO_CXR = {"Atelectasis": "ATELECTASIS", "Cardiomegaly": "CARDIOMEGALY", "Pleural Effusion": "EFFUSION",
                   "Pneumonia": "PNEUMONIA", "Pneumothorax": "PNEUMOTHORAX", "Consolidation": "CONSOLIDATION",
                   "Edema": "EDEMA", "Lung Lesion": None, "Lung Opacity": None, "No Finding": None}


@dataclass
class EvalDataset:
    """What an evaluation needs. ``inputs`` is None when ``scores`` are given (worklist)."""

    name: str
    labels: list[str]
    Y: np.ndarray                      # [n, L] float: 1, 0 or NaN (unknown)
    meta: pd.DataFrame                 # one row per case: id, site, sex, age, manufacturer ...
    inputs: np.ndarray | None = None   # [n, ...] float32 preprocessed model inputs
    scores: np.ndarray | None = None   # [n, L] precomputed probabilities (worklist exports)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.Y)


def parse_data_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``"cinc:/path?limit=5"`` → ("cinc", Path("/path"), {"limit": "5"})."""
    fmt, sep, rest = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or fmt not in FORMATS:
        raise ValueError(f"--data must be FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}; got {spec!r}")
    path, _, query = rest.partition("?")
    return fmt, Path(path).expanduser(), dict(parse_qsl(query))


def _align(found: dict[str, np.ndarray], source_labels: Sequence[str], card_labels: Sequence[str]) -> np.ndarray:
    """Columns of the card's labels; labels the source does not know become NaN."""
    n = len(next(iter(found.values()))) if found else 0
    out = np.full((n, len(card_labels)), np.nan)
    for j, code in enumerate(card_labels):
        if code in found:
            out[:, j] = found[code]
    return out


def _limit(items: list, options: dict[str, str]) -> list:
    return items[: int(options["limit"])] if "limit" in options else items


# --------------------------------------------------------------------------------------------------
# ECG

def _ecg_input(record) -> np.ndarray:
    from datasets.ecg.transforms import preprocess_signals

    record = record.in_standard_order()
    return preprocess_signals(record.signals, record.sampling_rate)


def load_cinc(path: Path, card_labels: Sequence[str], options: dict[str, str]) -> EvalDataset:
    from datasets.ecg.readers import read_wfdb
    from models.ecg.labels import ECG_LABEL_CODES, labels_from_snomed

    headers = _limit(sorted(Path(path).rglob("*.hea")), options)
    if not headers:
        raise FileNotFoundError(f"no WFDB headers (*.hea) under {path}")
    X, rows, Ys = [], [], []
    for header in headers:
        try:
            record = read_wfdb(header)
            x = _ecg_input(record)
        except Exception as exc:  # noqa: BLE001 - a bad record is reported, not fatal
            warnings.warn(f"skipping {header.name}: {exc}")
            continue
        codes = labels_from_snomed(record.labels)
        Ys.append([1.0 if c in codes else 0.0 for c in ECG_LABEL_CODES])
        X.append(x)
        stem = header.stem
        prefix = "HR" if stem.startswith("HR") else "JS" if stem.startswith("JS") else stem[:1]
        rows.append({"id": stem, "site": CINC_SOURCES.get(prefix, prefix), "sex": record.patient.get("sex"),
                     "age": record.patient.get("age"), "manufacturer": record.meta.get("manufacturer", "unknown")})
    if not X:
        raise ValueError(f"no usable records under {path}")
    Y = np.asarray(Ys)
    Y = _align({c: Y[:, i] for i, c in enumerate(ECG_LABEL_CODES)}, ECG_LABEL_CODES, card_labels)
    return EvalDataset(f"cinc:{path}", list(card_labels), Y, pd.DataFrame(rows), inputs=np.stack(X).astype(np.float32),
                       notes=["CinC Dx SNOMED codes mapped with models.ecg.labels.labels_from_snomed; "
                              "a record without a mapped code is negative for every label"])


def load_ptbxl(path: Path, card_labels: Sequence[str], options: dict[str, str]) -> EvalDataset:
    from datasets.ecg.readers import read_wfdb
    from models.ecg.labels import ECG_LABEL_CODES

    db = pd.read_csv(path / "ptbxl_database.csv", index_col="ecg_id")
    fold = int(options.get("fold", 10))
    db = db[db["strat_fold"] == fold]
    column = "filename_hr" if options.get("rate", "500") == "500" else "filename_lr"
    items = _limit(list(db.iterrows()), options)
    X, Ys, rows = [], [], []
    for ecg_id, row in items:
        header = (path / row[column]).with_suffix(".hea")
        try:
            x = _ecg_input(read_wfdb(header))
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"skipping PTB-XL {ecg_id}: {exc}")
            continue
        scp = ast.literal_eval(row["scp_codes"]) if isinstance(row["scp_codes"], str) else {}
        ours = {PTBXL_TO_ECG.get(k) for k in scp} - {None}
        X.append(x)
        Ys.append([1.0 if c in ours else 0.0 for c in ECG_LABEL_CODES])
        sex = row.get("sex")
        rows.append({"id": str(ecg_id), "site": str(row.get("site", "unknown")),
                     "sex": {0: "male", 1: "female"}.get(int(sex), "unknown") if pd.notna(sex) else "unknown",
                     "age": row.get("age"), "manufacturer": str(row.get("device", "unknown"))})
    if not X:
        raise ValueError(f"no usable PTB-XL records in fold {fold} under {path}")
    Y = np.asarray(Ys)
    Y = _align({c: Y[:, i] for i, c in enumerate(ECG_LABEL_CODES)}, ECG_LABEL_CODES, card_labels)
    return EvalDataset(f"ptbxl:{path} fold {fold}", list(card_labels), Y, pd.DataFrame(rows),
                       inputs=np.stack(X).astype(np.float32),
                       notes=[f"PTB-XL strat_fold {fold}; SCP statements mapped with evaluation.datasets.PTBXL_TO_ECG"])


# --------------------------------------------------------------------------------------------------
# Images

def _image_size(card) -> tuple[int, int]:
    shape = list(card.input.shape) if card is not None else [None, 3, 224, 224]
    return int(shape[-1]), int(shape[1]) if len(shape) == 4 else 1


def _image_input(file: Path, card) -> np.ndarray:
    from datasets.imaging import read_image
    from datasets.imaging.transforms import preprocess_image

    size, channels = _image_size(card)
    return preprocess_image(read_image(file), size=size, channels=channels)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}


def load_nih(path: Path, card_labels: Sequence[str], options: dict[str, str], card=None) -> EvalDataset:
    from models.cxr.labels import CXR_LABEL_CODES, codes_from_nih

    csvs = sorted(path.glob("Data_Entry*.csv"))
    X, Ys, rows = [], [], []
    if csvs:
        table = pd.read_csv(csvs[0])
        files = {p.name: p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES}
        for _, row in table.iterrows():
            file = files.get(row["Image Index"])
            if file is None:
                continue
            codes = codes_from_nih(row["Finding Labels"])
            Ys.append([1.0 if c in codes else 0.0 for c in CXR_LABEL_CODES])
            rows.append({"id": row["Image Index"], "file": str(file), "site": "NIH",
                         "sex": {"M": "male", "F": "female"}.get(str(row.get("Patient Gender")), "unknown"),
                         "age": row.get("Patient Age"), "manufacturer": "unknown",
                         "view": row.get("View Position")})
        note = f"labels from {csvs[0].name}"
    else:
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            normal = folder.name.lower().replace("_", " ") in ("no finding", "no findings", "normal")
            if normal:
                y = [0.0] * len(CXR_LABEL_CODES)
            else:
                codes = codes_from_nih(folder.name)
                # only the folder's finding is known: the image may show others too
                y = [1.0 if c in codes else np.nan for c in CXR_LABEL_CODES]
            for file in sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES):
                Ys.append(y)
                rows.append({"id": file.stem, "file": str(file), "site": "NIH", "sex": "unknown", "age": None,
                             "manufacturer": "unknown"})
        note = ("class-folder layout: a finding folder is positive for that finding (and ANY) and unknown for the "
                "others; a no-finding folder is negative for all")
    order = _limit(list(range(len(rows))), options)
    for i in order:
        X.append(_image_input(Path(rows[i]["file"]), card))
    Y = np.asarray([Ys[i] for i in order], dtype=np.float64)
    Y = _align({c: Y[:, k] for k, c in enumerate(CXR_LABEL_CODES)}, CXR_LABEL_CODES, card_labels)
    return EvalDataset(f"nih:{path}", list(card_labels), Y, pd.DataFrame([rows[i] for i in order]),
                       inputs=np.stack(X).astype(np.float32) if X else None, notes=[note])


def load_chexpert(path: Path, card_labels: Sequence[str], options: dict[str, str], card=None) -> EvalDataset:
    """``path``: the CSV (valid.csv / test.csv); image paths in it are relative to its parent's parent
    (CheXpert convention ``CheXpert-v1.0-small/valid/...``) or to its folder, whichever exists."""
    policy = options.get("uncertain", "ignore")
    if policy not in ("ones", "zeros", "ignore"):
        raise ValueError("chexpert uncertain policy must be ones, zeros or ignore")
    table = pd.read_csv(path)
    table = table.iloc[_limit(list(range(len(table))), options)]
    found: dict[str, list] = {}
    X, rows = [], []
    for _, row in table.iterrows():
        rel = Path(row["Path"])
        candidates = [path.parent.parent / rel, path.parent / rel, path.parent / Path(*rel.parts[1:])]
        file = next((c for c in candidates if c.is_file()), candidates[0])
        X.append(_image_input(file, card))
        rows.append({"id": str(rel), "site": "CheXpert", "sex": str(row.get("Sex", "unknown")).lower(),
                     "age": row.get("Age"), "manufacturer": "unknown"})
        for column, code in CHEXPERT_TO_CXR.items():
            if code is None or column not in row:
                continue
            v = row[column]
            if pd.isna(v):
                value = 0.0  # CheXpert: blank = not mentioned = negative
            elif v == -1:
                value = {"ones": 1.0, "zeros": 0.0, "ignore": np.nan}[policy]
            else:
                value = float(v)
            found.setdefault(code, []).append(value)
    Y = _align({k: np.asarray(v) for k, v in found.items()}, list(found), card_labels)
    return EvalDataset(f"chexpert:{path}", list(card_labels), Y, pd.DataFrame(rows), inputs=np.stack(X).astype(np.float32),
                       notes=[f"uncertain labels (-1): {policy}; labels CheXpert lacks are unknown"])


def load_medmnist(path: Path, card_labels: Sequence[str], options: dict[str, str], card=None) -> EvalDataset:
    from datasets.imaging.transforms import preprocess_image

    split = options.get("split", "test")
    data = np.load(path)
    images, targets = data[f"{split}_images"], data[f"{split}_labels"]
    n = len(_limit(list(range(len(images))), options))
    size, channels = _image_size(card)
    X = []
    for image in images[:n]:
        pixels = image.astype(np.float32) / 255.0
        if pixels.ndim == 3:
            pixels = pixels.mean(axis=-1)
        X.append(preprocess_image(pixels, size=size, channels=channels))
    targets = targets[:n].astype(np.float64)
    if targets.shape[1] != len(card_labels):
        raise ValueError(f"{path}: {targets.shape[1]} label columns but the card has {len(card_labels)} labels")
    meta = pd.DataFrame({"id": [f"{split}-{i}" for i in range(n)], "site": "MedMNIST"})
    return EvalDataset(f"medmnist:{path} {split}", list(card_labels), targets, meta, inputs=np.stack(X).astype(np.float32),
                       notes=["MedMNIST label columns taken in card order"])


def _dicom_meta(file: Path) -> dict[str, Any]:
    """Subgroup attributes from the DICOM header (labels.csv columns override them)."""
    try:
        import pydicom

        ds = pydicom.dcmread(file, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - metadata is optional
        return {}
    age = str(getattr(ds, "PatientAge", "") or "")
    sex = {"M": "male", "F": "female"}.get(str(getattr(ds, "PatientSex", "") or "").upper(), "unknown")
    return {"site": str(getattr(ds, "InstitutionName", "") or "unknown"), "sex": sex,
            "age": float(age[:3]) if age[:3].isdigit() and age.endswith("Y") else None,
            "manufacturer": str(getattr(ds, "Manufacturer", "") or "unknown")}


def load_dicom(path: Path, card_labels: Sequence[str], options: dict[str, str], card=None) -> EvalDataset:
    table = pd.read_csv(path / "labels.csv")
    table = table.iloc[_limit(list(range(len(table))), options)]
    X, rows = [], []
    ecg = card is not None and card.task == "ecg"
    for _, row in table.iterrows():
        file = path / str(row["file"])
        if ecg:
            from datasets.ecg.readers import read_dicom_waveform

            X.append(_ecg_input(read_dicom_waveform(file)))
        else:
            X.append(_image_input(file, card))
        rows.append({"id": str(row["file"]), **_dicom_meta(file),
                     **{k: row[k] for k in ("site", "sex", "age", "manufacturer") if k in row and pd.notna(row[k])}})
    found = {c: table[c].to_numpy(dtype=np.float64) for c in card_labels if c in table.columns}
    Y = _align(found, list(found), card_labels) if found else np.full((len(table), len(card_labels)), np.nan)
    return EvalDataset(f"dicom:{path}", list(card_labels), Y, pd.DataFrame(rows), inputs=np.stack(X).astype(np.float32),
                       notes=["labels.csv columns named by label code; missing columns are unknown"])


# --------------------------------------------------------------------------------------------------
# Signed reads

def _findings_to_set(value: Any) -> set[str] | dict[str, bool]:
    """Final findings in any of the shapes a signed read may hold: list of codes, {code: bool},
    {"findings": [...]} or a list of {"code", "positive"} objects."""
    if value is None:
        return set()
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith(("[", "{")) else [v for v in value.split("|") if v]
    if isinstance(value, dict) and "findings" in value:
        value = value["findings"]
    if isinstance(value, dict):
        return {str(k): bool(v) for k, v in value.items()}
    out = set()
    for item in value:
        if isinstance(item, dict):
            if item.get("positive", True):
                out.add(str(item.get("code")))
        else:
            out.add(str(item))
    return out


def _ai_probabilities(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "findings" in value:
        value = value["findings"]
    if isinstance(value, dict):  # {code: p} or {code: {"probability": p, "positive": ...}} (worklist corrections)
        return {str(k): float(v["probability"] if isinstance(v, dict) else v) for k, v in value.items()}
    return {str(f["code"]): float(f["probability"]) for f in value}


def _age(value: Any) -> float | None:
    """40, "40", "040Y" (DICOM AS; months/weeks/days → fractions of a year) → years."""
    if value is None or value == "":
        return None
    text_value = str(value).strip().upper()
    factor = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}.get(text_value[-1:], None)
    try:
        return float(text_value[:-1]) * factor if factor else float(text_value)
    except ValueError:
        return None


def _sex(value: Any) -> str:
    text_value = str(value or "").strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(text_value, "unknown")


def signed_reads_to_dataset(records: list[dict], card_labels: Sequence[str], name: str = "worklist") -> EvalDataset:
    """Rows with ``final_findings`` (reference) and ``ai_read`` / ``ai_findings`` (scores). When a
    study was signed more than once (amendments), the last row for it is the reference."""
    last: dict[str, int] = {}
    for i, rec in enumerate(records):
        last[str(rec.get("study_uid") or rec.get("study") or i)] = i
    records = [records[i] for i in sorted(last.values())]
    Y = np.full((len(records), len(card_labels)), np.nan)
    S = np.full((len(records), len(card_labels)), np.nan)
    rows = []
    for i, rec in enumerate(records):
        final = _findings_to_set(rec.get("final_findings"))
        probabilities = _ai_probabilities(rec.get("ai_read") or rec.get("ai_findings"))
        for j, code in enumerate(card_labels):
            Y[i, j] = float(final.get(code, False)) if isinstance(final, dict) else float(code in final)
            S[i, j] = probabilities.get(code, np.nan)
        band = rec.get("patient_age_band") or rec.get("age_band")
        rows.append({"id": rec.get("study_uid") or rec.get("study") or str(i), "site": rec.get("site", "unknown"),
                     **({"age_band": band} if band else {}),
                     "sex": _sex(rec.get("patient_sex") or rec.get("sex")), "age": _age(rec.get("patient_age") or rec.get("age")),
                     "manufacturer": rec.get("manufacturer", "unknown"),
                     "signed_at": rec.get("signed_at") or rec.get("signed_month")})
    missing = np.isnan(S).any(axis=1)
    if missing.any():
        warnings.warn(f"{int(missing.sum())} signed reads without AI probabilities for every label were dropped")
    keep = ~missing
    return EvalDataset(name, list(card_labels), Y[keep], pd.DataFrame(rows)[keep].reset_index(drop=True),
                       scores=S[keep], notes=["reference: signed final findings; scores: the AI read stored at the time"])


def load_worklist(path: Path, card_labels: Sequence[str], options: dict[str, str], card=None) -> EvalDataset:
    if path.suffix.lower() == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(records, dict):  # GET /api/v1/exports/signed-reads → {"rows": [...]}
            records = records.get("rows", records.get("reads", []))
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    records = _limit(records, options)
    if card is not None and options.get("all_models") != "1":
        records = [r for r in records if not r.get("model_name") or r.get("model_name") == card.name]
    return signed_reads_to_dataset(records, card_labels, name=f"worklist:{path}")


LOADERS: dict[str, Callable[..., EvalDataset]] = {
    "cinc": lambda p, labels, o, card=None: load_cinc(p, labels, o),
    "ptbxl": lambda p, labels, o, card=None: load_ptbxl(p, labels, o),
    "nih": load_nih, "chexpert": load_chexpert, "medmnist": load_medmnist, "dicom": load_dicom,
    "worklist": load_worklist,
}


def load_eval_dataset(spec: str, card) -> EvalDataset:
    """``FORMAT:PATH[?k=v&...]`` for a model with this card."""
    fmt, path, options = parse_data_spec(spec)
    if not path.exists():
        raise FileNotFoundError(f"{fmt} data not found at {path}")
    return LOADERS[fmt](path, list(card.labels), options, card=card)

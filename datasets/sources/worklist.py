"""Signed reads exported from the worklist (``GET /api/v1/exports/signed-reads``), de-identified.

The export is JSON ``{"rows": [...], "count": n, "deidentified": true}`` (or a bare list, or a CSV
with the same fields). Each row: ``study`` (a pseudonym), ``site``, ``modality``, ``patient_sex``,
``patient_age_band``, ``signed_month``, ``agree``, ``ai_findings`` (the AI read the reader saw),
``final_findings`` (what the reader signed), ``model_name``, ``model_version``, ``amendment``.

Reference labels are the signed final findings. A label the AI read showed the reader and the
reader did not sign is 0; a label the read did not show at all (another model's label set) is
unknown. When a study was signed more than once (amendments), its last row is the reference.
``scores`` are the AI probabilities stored at the time, so agreement can be measured without
re-running a model.

A de-identified export carries no signals or pixels: inputs exist only for rows with a ``file``
field (a path relative to the export) that the data team added when joining the export with the
instances it may use; otherwise ``load_inputs`` explains that and training on it is refused.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.sources.base import (
    SourceDataset,
    SourceLayoutError,
    ecg_file_loader,
    image_file_loader,
    label_columns,
    normalise_sex,
)
from datasets.vocabulary.age import age_in_years


def findings_to_set(value: Any) -> set[str] | dict[str, bool]:
    """Final findings in any of the shapes a signed read may hold: list of codes, {code: bool},
    {"findings": [...]}, a list of {"code", "positive"} objects, JSON text or "A|B"."""
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


def ai_probabilities(value: Any) -> dict[str, float]:
    """The AI read's probabilities: {"findings": [{"code", "probability"}...]}, {code: p} or
    {code: {"probability": p, ...}} (the worklist's stored corrections)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "findings" in value:
        value = value["findings"]
    if isinstance(value, dict):
        return {str(k): float(v["probability"] if isinstance(v, dict) else v) for k, v in value.items()}
    return {str(f["code"]): float(f["probability"]) for f in value}


def _is_ecg(row: dict) -> bool | None:
    modality = str(row.get("modality") or "").upper()
    return None if not modality else modality == "ECG"


def signed_reads_dataset(
    records: list[dict],
    labels: Sequence[str],
    label_names: Sequence[str] | None = None,
    *,
    path: Path | str = ".",
    task: str = "ecg",
    image_size: int = 224,
    channels: int = 1,
) -> SourceDataset:
    """Signed-read rows → SourceDataset (last row per study wins; see the module notes)."""
    last: dict[str, int] = {}
    for i, rec in enumerate(records):
        last[str(rec.get("study_uid") or rec.get("study") or i)] = i
    records = [records[i] for i in sorted(last.values())]
    Y = np.full((len(records), len(labels)), np.nan, dtype=np.float32)
    S = np.full((len(records), len(labels)), np.nan)
    base = Path(path).parent if Path(path).suffix else Path(path)
    for i, rec in enumerate(records):
        Y[i], S[i] = _reference_and_scores(rec, labels)
    rows = [_case_row(rec, i, base) for i, rec in enumerate(records)]
    meta = pd.DataFrame(rows)
    with_files = "file" in meta.columns and meta["file"].notna().all() and len(meta) > 0
    loader = None
    if with_files:
        loader = ecg_file_loader() if task == "ecg" else image_file_loader(image_size, channels)
    names = list(label_names) if label_names is not None else list(labels)
    notes = ["reference: signed final findings; scores: the AI read stored at the time"]
    if not with_files:
        notes.append(
            "a de-identified signed-reads export holds no signals or images; add a 'file' field per row "
            "(path relative to the export) to train on it"
        )
    return SourceDataset(
        format="worklist",
        path=Path(path),
        task=task,
        labels=list(labels),
        label_names=names,
        Y=Y,
        meta=meta if len(meta) else pd.DataFrame({"id": []}),
        loader=loader,
        scores=S,
        notes=notes,
        input_spec={"size": image_size, "channels": channels} if task == "cxr" else {},
        description=f"signed reads exported from the worklist ({path}): {len(rows)} studies",
    )


def _reference_and_scores(rec: dict, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """One signed read's reference (1 / 0; NaN for a label the reader was never asked about) and the
    AI probabilities stored with it."""
    y, scores = np.full(len(labels), np.nan, dtype=np.float32), np.full(len(labels), np.nan)
    final = findings_to_set(rec.get("final_findings"))
    probabilities = ai_probabilities(rec.get("ai_read") or rec.get("ai_findings"))
    shown = set(probabilities) | (set(final) if isinstance(final, dict) else set(final))
    for j, code in enumerate(labels):
        if probabilities and code not in shown:
            continue  # the reader was never asked about this label: unknown
        y[j] = float(final.get(code, False)) if isinstance(final, dict) else float(code in final)
        scores[j] = probabilities.get(code, np.nan)
    return y, scores


def _case_row(rec: dict, i: int, base: Path) -> dict[str, Any]:
    """One signed read's meta: the study pseudonym as id and patient, site, the export's age band, sex,
    model, and the input file where the data team added one."""
    band = rec.get("patient_age_band") or rec.get("age_band")
    age = age_in_years(rec.get("patient_age") or rec.get("age"))
    study = rec.get("study_uid") or rec.get("study") or str(i)
    return {
        "id": study,
        "patient_id": study,
        "site": rec.get("site") or "unknown",
        **({"age_band": band} if band else {}),
        "sex": normalise_sex(rec.get("patient_sex") or rec.get("sex")),
        "age": age if age is not None else np.nan,
        "manufacturer": rec.get("manufacturer") or "unknown",
        "signed_at": rec.get("signed_at") or rec.get("signed_month"),
        "model_name": rec.get("model_name"),
        "model_version": rec.get("model_version"),
        **({"file": str(base / str(rec["file"]))} if rec.get("file") else {}),
    }


def read_export(path: Path) -> list[dict]:
    """The export's rows from JSON (``{"rows": [...]}`` or a list) or CSV."""
    try:
        if path.suffix.lower() == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(records, dict):
                if "rows" not in records and "reads" not in records:
                    raise SourceLayoutError(
                        f"worklist: {path} is a JSON object without 'rows' "
                        "(expected the GET /api/v1/exports/signed-reads answer)"
                    )
                records = records.get("rows", records.get("reads"))
        else:
            with path.open(newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise SourceLayoutError(f"worklist: cannot read {path} ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SourceLayoutError(f"worklist: {path} must hold a list of signed-read objects")
    missing = [i for i, r in enumerate(records) if "final_findings" not in r]
    if missing:
        raise SourceLayoutError(
            f"worklist: {path} row {missing[0]} has no 'final_findings' ({len(missing)} such row(s))"
        )
    return records


def load_worklist(
    path: str | Path,
    *,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    model_name: str | None = None,
    image_size: int = 224,
    channels: int = 1,
    limit: int | None = None,
) -> SourceDataset:
    """An export file → SourceDataset of one task's studies (``task`` None: the ECG rows if any
    are ECGs, else the images), optionally only reads made by ``model_name``."""
    path = Path(path)
    records = read_export(path)
    if limit is not None:
        records = records[:limit]
    if task is None:
        task = "ecg" if any(_is_ecg(r) for r in records) or not any(_is_ecg(r) is False for r in records) else "cxr"
    records = [r for r in records if _is_ecg(r) in (None, task == "ecg")]
    if model_name is not None:
        records = [r for r in records if not r.get("model_name") or r.get("model_name") == model_name]
    codes, names = label_columns(task, labels)
    return signed_reads_dataset(records, codes, names, path=path, task=task, image_size=image_size, channels=channels)

"""Evaluations as MLflow runs: every `preread evaluate` on a model from the MLflow registry is a run
in the model's experiment (``preread-ecg``, ``preread-cxr``) beside the training runs, so the
evidence for a version sits with it.

What a run holds:

- tags ``preread.kind = evaluation``, the model reference and the data it was evaluated on;
- parameters: the data spec, bootstrap resamples, seed, backend, champion (when compared);
- metrics: every headline number with its 95% interval (``macro_auroc``, ``macro_auroc/ci_low`` ...),
  the per-label metrics (``label/AF/auroc`` ...), and ``gate/passed`` (1 or 0) when a gate ran;
- artifacts: the HTML report with its plots and metrics.json (``report/``), or metrics.json alone
  when no report was asked for.

The registered version gets a tag ``preread.evaluation.<data>`` naming the run, so the MLflow UI
(and `preread models list`) leads from a version to its evaluations.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.registry import RegisteredModel, Registry
from models.registry_mlflow import MlflowRegistry, experiment_name, flatten, numbers

MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics (100 params) per log_batch call


def _metrics(result: Mapping[str, Any]) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    for key, entry in result.get("headline", {}).items():
        if isinstance(entry, Mapping):
            found += [
                (key if part == "value" else f"{key}/{part}", v)
                for part, v in numbers("", entry)
                if part in ("value", "ci_low", "ci_high")
            ]
    for code, entry in result.get("per_label", {}).items():
        found += list(numbers(f"label/{code}", entry))
    gate = result.get("gate")
    if gate is not None:
        found.append(("gate/passed", float(bool(gate.get("passed")))))
    return found


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:100] or "data"


def track_evaluation(
    registry: Registry,
    model: RegisteredModel,
    result: Mapping[str, Any],
    *,
    params: Mapping[str, Any],
    report_dir: str | Path | None = None,
) -> str | None:
    """Log an evaluation ``result`` (of ``run_evaluate``) as an MLflow run; returns the run id, or
    None when the registry is a folder (nothing to track into)."""
    if not isinstance(registry, MlflowRegistry):
        return None
    from mlflow.entities import Metric, Param, RunStatus  # noqa: PLC0415 - MLflow is heavy: loaded when tracking

    client = registry.client
    data = str(result.get("data", params.get("data", "")))
    tags = {
        "preread.kind": "evaluation",
        "preread.model": model.ref,
        "preread.data": data,
        "mlflow.source.name": "preread evaluate",
        "mlflow.source.type": "LOCAL",
    }
    info = registry.start_run(experiment_name(model.card.task), f"evaluate {model.ref} on {data}"[:250], tags)
    try:
        logged = [Param(key, value[:6000]) for key, value in flatten("", dict(params)) if value != "None"]
        for start in range(0, len(logged), 100):
            chunk = logged[start : start + 100]
            registry.call(lambda chunk=chunk: client.log_batch(info.run_id, params=chunk))
        metrics = [Metric(key, value, 0, 0) for key, value in _metrics(result)]
        for start in range(0, len(metrics), MAX_BATCH):
            batch = metrics[start : start + MAX_BATCH]
            registry.call(lambda batch=batch: client.log_batch(info.run_id, metrics=batch))
        if report_dir is not None and Path(report_dir).is_dir():
            registry.call(lambda: client.log_artifacts(info.run_id, str(report_dir), "report"))
        else:
            with tempfile.TemporaryDirectory(prefix="preread-evaluation-") as tmp:
                path = Path(tmp) / "metrics.json"
                path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
                registry.call(lambda: client.log_artifact(info.run_id, str(path)))
        registry.call(
            lambda: client.set_model_version_tag(
                model.name, str(model.version), f"preread.evaluation.{_slug(data)}", info.run_id
            )
        )
    except BaseException:
        registry.call(lambda: client.set_terminated(info.run_id, RunStatus.to_string(RunStatus.FAILED)))
        raise
    registry.call(lambda: client.set_terminated(info.run_id, "FINISHED"))
    return info.run_id

"""`preread bench cxr`: the chest X-ray network served by preread against itself in-process and
against Triton (bench/harness.py: rows (a), (b), (c)), plus the whole pre-read:

- in-process pre-read: CxrPreReader.read_batch on batches of NIH sample PNGs wrapped as DX DICOM
  (read back with read_dicom_image), with and without Grad-CAM heatmaps;
- in-process whole read: per study what the reading room does, without store or network
  (``whole_read_in_process``);
- C-STORE → worklist (bench/cxr_cstore.py): the app on Ray Serve with its DICOM listener; each study
  is one wrapped NIH image with a fresh StudyInstanceUID; bursts over several associations, then an
  open-loop 1 study/s. Latency is from the C-STORE send until the study's row is ``ai_read`` (it
  includes ``dicom.study_stable_seconds``).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from bench.cxr_cstore import dicom_load, dicom_paced
from bench.harness import Comparison, LoadPlan, batched_reads_per_s, run_comparison, write_result
from datasets.imaging.dicom import read_dicom_image
from datasets.imaging.wrap import wrap_png_as_dicom
from models.cxr.overlay import render_deferred_heatmaps
from models.cxr.pipeline import CxrPreReader
from models.registry import ModelRegistry, copy_model
from serving.config import load_config
from serving.ingest.dicom import encode
from serving.replica.triton.server import free_port
from serving.results.outbound import result_objects
from serving.store.db import Database
from training.config import load_train_config
from training.cxr import train_cxr
from training.demo import ensure_demo_models

REPO = Path(__file__).resolve().parents[1]
NIH_DIR = Path(os.environ.get("PREREAD_NIH_DIR", REPO.parent / "shared" / "data" / "cxr" / "nih"))
STABLE_S = 0.2
DISPATCH_POLL_S = 0.5  # the service's own dispatcher (its default): faster polling would burn the
# CPU the raw-tensor rows measure, on every tick, all run long
PACED_RATE_PER_S = 1.0


def nih_pngs(limit: int | None = None) -> list[Path]:
    paths = sorted(NIH_DIR.rglob("*.png"))
    if not paths:
        raise SystemExit(f"bench cxr: no NIH PNGs under {NIH_DIR}")
    return paths[:limit] if limit else paths


def wrapped_studies(pngs: list[Path], n: int) -> list[Any]:
    """n DX datasets cycling through ``pngs``, each with fresh Study/Series/SOP UIDs."""

    return [wrap_png_as_dicom(pngs[i % len(pngs)]) for i in range(n)]


def _ensure_cxr_registry(base_cfg, quick: bool, console):
    """The serving config's registry if it holds a CXR model; otherwise, for --quick, a temp registry
    with the tiny test CXR model and the served ECG model copied in; otherwise train the demo model."""

    ensure_demo_models(base_cfg, ["ecg"])
    if not base_cfg.registry.open().is_empty("cxr") or not quick:
        ensure_demo_models(base_cfg, ["cxr"])
        return base_cfg, None
    temp = Path(tempfile.mkdtemp(prefix="preread-bench-registry-"))
    copy_model(base_cfg.registry.open(), ModelRegistry(temp), "ecg")
    config = load_train_config(REPO / "tests" / "data" / "cxr-tiny.yaml")
    config = config.model_copy(update={"checkpoint_dir": temp / "checkpoints"})
    console.print("[yellow]no CXR model registered: training the tiny test model (cxr-tiny.yaml) for --quick[/]")
    train_cxr(config, registry=ModelRegistry(temp), progress=False)
    return base_cfg.model_copy(update={"registry": base_cfg.registry.model_copy(update={"uri": str(temp)})}), temp


def whole_read_in_process(reader, studies: list, batch: int) -> float:
    """Studies/s of the whole read in one process, the same work the served path does per study: the
    DICOM bytes decoded, the acceptance check, the batched read with heatmaps on the image, and the SR
    and Secondary Capture built and encoded (``serving.results.outbound.result_objects``, as the
    reading room does; no store, no network)."""
    payloads = [encode(ds) for ds in studies]

    def one_batch(chunk: list[bytes]) -> None:
        sources = [pydicom.dcmread(io.BytesIO(data)) for data in chunk]
        records = [read_dicom_image(ds) for ds in sources]
        for source, record, read in zip(sources, records, reader.read_batch(records)):
            if read.cam_maps:
                render_deferred_heatmaps(read, record)
            for item in result_objects(source, read):
                encode(item.dataset)

    one_batch(payloads[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(payloads), batch):
        one_batch(payloads[start : start + batch])
    return len(payloads) / (time.perf_counter() - started)


@dataclass
class InProcess:
    """The in-process figures the served rows are compared with."""

    reads_per_s: dict[str, float]  # "no_heatmaps" / "with_heatmaps": CxrPreReader.read_batch alone
    tensors: Any  # one batch of model inputs for rows (a)-(c)
    whole_read: Callable[[], float] | None = None  # one run of whole_read_in_process (None: no heatmaps)
    whole_runs: list[float] = field(default_factory=list)  # its studies/s, run by run

    def measure_whole(self, say: Callable[[str], None]) -> None:
        if self.whole_read is not None:
            self.whole_runs.append(self.whole_read())
            say(f"in-process whole read (decode, acceptance, read, heatmaps, SR + SC): {self.whole_runs[-1]:.2f}/s")

    @property
    def whole_per_s(self) -> float | None:
        """The mean of the runs: one before the served rows and one after each served phase (the
        machine is shared and its load drifts; the served rows are compared with what was around them)."""
        return float(sum(self.whole_runs) / len(self.whole_runs)) if self.whole_runs else None


def measure_in_process(base_cfg, pngs: list[Path], batch: int, n_images: int, say: Callable[[str], None]) -> InProcess:
    """The reader alone with and without heatmaps, then the whole read with them."""
    records = [read_dicom_image(ds) for ds in wrapped_studies(pngs, n_images)]
    max_batch = base_cfg.deployments.cxr.max_batch_size
    reads: dict[str, float] = {}
    reader = None
    for heatmaps in (False, True):
        reader = CxrPreReader.from_registry(
            base_cfg.registry.open(),
            base_cfg.models["cxr"].ref,
            base_cfg.triage_path("cxr"),
            backend="onnxruntime",
            heatmaps=heatmaps,
        )
        if heatmaps and not reader.heatmaps_available:
            break
        key = "with_heatmaps" if heatmaps else "no_heatmaps"
        reads[key] = batched_reads_per_s(reader, records, max_batch)
        say(f"in-process pre-read ({key}): {reads[key]:.1f} images/s")
    assert reader is not None
    tensors = np.stack([reader.preprocess(records[i % len(records)])[0] for i in range(batch)]).astype(np.float32)
    measured = InProcess(reads, tensors)
    if reader.heatmaps_available:
        studies = wrapped_studies(pngs, n_images)
        measured.whole_read = lambda: whole_read_in_process(reader, studies, max_batch)
        measured.measure_whole(say)
    return measured


class StudySupply:
    """Fresh wrapped studies handed out in order (every study sent once)."""

    def __init__(self, studies: list):
        self.studies = studies
        self.used = 0

    def take(self, n: int) -> list:
        chunk = self.studies[self.used : self.used + n]
        self.used += n
        return chunk


def full_path_rows(
    cfg, supply: StudySupply, concurrencies: list[int], n_studies: int, n_paced: int, measured: InProcess, say
) -> list[dict]:
    """C-STORE bursts at each concurrency, then open-loop 1 study/s; the served ÷ in-process ratio."""

    db = Database(cfg.database.url)
    time.sleep(1.0)  # the SCP thread binds its port as the ingress starts
    warm = dicom_load(cfg, db, supply.take(4), 2)
    say(f"  C-STORE warm-up: {warm['ai_read']}/{warm['studies']} ai_read {warm['other_statuses']}")
    rows = []
    for concurrency in concurrencies:
        row = dicom_load(cfg, db, supply.take(n_studies), concurrency)
        row["label"] = f"whole pre-read: C-STORE → worklist ai_read (stable {STABLE_S} s, poll {DISPATCH_POLL_S} s)"
        row["requests"] = row["studies"]
        say(
            f"  C-STORE c={concurrency}: {row['per_s']:.2f} studies/s p50 {row['p50_ms']:.0f} ms "
            f"failures {row['failures']} {row['other_statuses']}"
        )
        rows.append(row)
    paced = dicom_paced(cfg, db, supply.take(n_paced), PACED_RATE_PER_S)
    paced.update(
        label=f"whole pre-read at {PACED_RATE_PER_S:g} study/s (open loop): C-STORE → ai_read",
        concurrency="open",
        requests=paced["studies"],
        per_s=PACED_RATE_PER_S,
    )
    say(
        f"  C-STORE at {PACED_RATE_PER_S:g} study/s: p50 {paced['p50_ms']:.0f} ms p95 {paced['p95_ms']:.0f} ms "
        f"max {paced['max_ms']:.0f} ms (goal p95 ≤ 5000) failures {paced['failures']}"
    )
    rows.append(paced)
    measured.measure_whole(say)  # with the service idle again, for the ceiling around this phase
    best = max((row["per_s"] for row in rows if row.get("concurrency") != "open"), default=float("nan"))
    whole = measured.whole_per_s
    if whole:
        say(f"  served whole path ÷ in-process whole read: {best:.2f} / {whole:.2f} = {best / whole:.2f} (goal ≥ 0.8)")
    return rows


def whole_path_summary(result: dict[str, Any], measured: InProcess) -> dict[str, Any]:
    """The two goals of the whole path: served ÷ in-process (best burst) and the p95 at 1 study/s."""
    served_best = [row["per_s"] for row in result["full_path"] if row.get("concurrency") != "open"]
    paced_rows = [row for row in result["full_path"] if row.get("concurrency") == "open"]
    whole = measured.whole_per_s
    return {
        "in_process_whole_read_per_s": whole,
        "in_process_whole_read_runs_per_s": measured.whole_runs,
        "served_over_in_process_whole": max(served_best) / whole if served_best and whole else None,
        "c_store_to_read_p95_ms_at_1_per_s": max((row["p95_ms"] for row in paced_rows), default=None),
        "in_process_preread_no_heatmaps_per_s": measured.reads_per_s.get("no_heatmaps"),
        "in_process_preread_with_heatmaps_per_s": measured.reads_per_s.get("with_heatmaps"),
    }


def run_cxr_bench(
    json_path: str | None = None,
    quick: bool = False,
    triton: bool = True,
    haproxy_modes: tuple[bool, ...] = (False, True),
    batch: int = 32,
) -> int:
    from rich.console import Console  # noqa: PLC0415 - rich loads only when the bench prints

    console = Console(width=150)
    base_cfg, temp_registry = _ensure_cxr_registry(load_config().resolved(), quick, console)
    plan = LoadPlan(
        batch=batch,
        concurrencies=[1, 4] if quick else [1, 2, 4, 8],
        requests=12 if quick else 40,
        half_load_requests=12 if quick else 40,
    )
    n_studies, n_paced = (12, 20) if quick else (32, 40)
    concurrencies = [1, 4] if quick else [1, 4, 8]
    pngs = nih_pngs()
    measured = measure_in_process(base_cfg, pngs, plan.batch, 16 if quick else 40, console.print)
    supply = StudySupply(wrapped_studies(pngs, (n_studies * len(concurrencies) + 4 + n_paced) * len(haproxy_modes)))
    max_batch = base_cfg.deployments.cxr.max_batch_size
    job = Comparison(
        task="cxr",
        unit="images",
        base_cfg=base_cfg,
        tensors=measured.tensors,
        plan=plan,
        models=["ecg", "cxr"],
        triton=triton,
        haproxy_modes=haproxy_modes,
        dicom=True,
        dicom_updates={
            "port": free_port(),
            "study_stable_seconds": STABLE_S,
            "poll_seconds": DISPATCH_POLL_S,
            "results_destination": None,
        },
        full_path=lambda cfg, base, say: full_path_rows(cfg, supply, concurrencies, n_studies, n_paced, measured, say),
        extra_rows=[
            {"label": f"whole pre-read in-process, batch {max_batch}, {key.replace('_', ' ')}", "per_s": value}
            for key, value in measured.reads_per_s.items()
        ],
    )
    try:
        result = run_comparison(job, console)
    finally:
        if temp_registry is not None:
            shutil.rmtree(temp_registry, ignore_errors=True)
    registry = "temp (tests/data/cxr-tiny.yaml)" if temp_registry is not None else str(base_cfg.registry.uri)
    return finish(result, measured, quick, registry, json_path, console)


def finish(
    result: dict[str, Any], measured: InProcess, quick: bool, registry: str, json_path: str | None, console
) -> int:
    """Print the whole path's two goals, write the result; 1 when any request or study failed."""

    result.update(whole_path_summary(result, measured))
    console.print(
        f"[bold]CXR whole path: served ÷ in-process = {result['served_over_in_process_whole']} "
        f"(goal ≥ 0.8); C-STORE-to-read p95 at 1 study/s = {result['c_store_to_read_p95_ms_at_1_per_s']} ms "
        f"(goal ≤ 5000)[/]"
    )
    result.update(study_stable_seconds=STABLE_S, quick=quick, registry=registry)
    write_result(result, json_path, REPO, console)
    failures = sum(level["failures"] for mode in result["serve"].values() for level in mode["levels"])
    failures += sum(row["failures"] for row in result["full_path"])
    return 0 if failures == 0 else 1

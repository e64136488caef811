"""`preread bench cxr`: the chest X-ray network served by preread against itself in-process and
against Triton (bench/harness.py: rows (a), (b), (c)), plus the whole pre-read:

- in-process pre-read: CxrPreReader.read_batch on batches of NIH sample PNGs wrapped as DX DICOM
  (read back with read_dicom_image), with and without Grad-CAM heatmaps;
- C-STORE → worklist: the app on Ray Serve with its DICOM listener; each study is one wrapped NIH
  image with a fresh StudyInstanceUID sent by a pynetdicom AE (calling AE DEMOSITE), several
  associations in parallel threads; latency is from the C-STORE send until the study's row is
  ``ai_read`` (it includes ``dicom.study_stable_seconds`` and the dispatcher's poll interval).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import batched_reads_per_s, percentile

REPO = Path(__file__).resolve().parents[1]
NIH_DIR = Path(os.environ.get("PREREAD_NIH_DIR", REPO.parent / "shared" / "data" / "cxr" / "nih"))
STABLE_S = 0.2
POLL_S = 0.05  # how often this bench looks for finished studies
DISPATCH_POLL_S = 0.5  # the service's own dispatcher (its default): faster polling would burn the
# CPU the raw-tensor rows measure, on every tick, all run long


def nih_pngs(limit: int | None = None) -> list[Path]:
    paths = sorted(NIH_DIR.rglob("*.png"))
    if not paths:
        raise SystemExit(f"bench cxr: no NIH PNGs under {NIH_DIR}")
    return paths[:limit] if limit else paths


def wrapped_studies(pngs: list[Path], n: int) -> list[Any]:
    """n DX datasets cycling through ``pngs``, each with fresh Study/Series/SOP UIDs."""
    from datasets.imaging.wrap import wrap_png_as_dicom  # noqa: PLC0415

    return [wrap_png_as_dicom(pngs[i % len(pngs)]) for i in range(n)]


def _ensure_cxr_registry(base_cfg, quick: bool, console):
    """The serving config's registry if it holds a CXR model; otherwise, for --quick, a temp registry
    with the tiny test CXR model and the served ECG model copied in; otherwise train the demo model."""
    from models.registry import ModelRegistry, copy_model  # noqa: PLC0415
    from training.demo import ensure_demo_models  # noqa: PLC0415

    ensure_demo_models(base_cfg, ["ecg"])
    if not base_cfg.registry.open().is_empty("cxr") or not quick:
        ensure_demo_models(base_cfg, ["cxr"])
        return base_cfg, None
    from training.config import load_train_config  # noqa: PLC0415
    from training.cxr import train_cxr  # noqa: PLC0415

    temp = Path(tempfile.mkdtemp(prefix="preread-bench-registry-"))
    copy_model(base_cfg.registry.open(), ModelRegistry(temp), "ecg")
    config = load_train_config(REPO / "tests" / "data" / "cxr-tiny.yaml")
    config = config.model_copy(update={"checkpoint_dir": temp / "checkpoints"})
    console.print("[yellow]no CXR model registered: training the tiny test model (cxr-tiny.yaml) for --quick[/]")
    train_cxr(config, registry=ModelRegistry(temp), progress=False)
    return base_cfg.model_copy(update={"registry": base_cfg.registry.model_copy(update={"uri": str(temp)})}), temp


def _store_worker(port: int, ae_title: str, studies: list, results: dict, lock: threading.Lock) -> None:
    from pynetdicom import AE  # noqa: PLC0415
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # noqa: PLC0415

    ae = AE(ae_title="DEMOSITE")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        with lock:
            for ds in studies:
                results[ds.StudyInstanceUID] = {"sent": None, "status": "association refused"}
        return
    try:
        for ds in studies:
            t0 = time.perf_counter()
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None) if status else None
            with lock:
                results[ds.StudyInstanceUID] = {"sent": t0, "stored": time.perf_counter(), "status": code}
    finally:
        assoc.release()


def dicom_load(cfg, db, studies: list, concurrency: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send ``studies`` over ``concurrency`` associations; wait until each row is ai_read."""
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    shares = [studies[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    threads = [
        threading.Thread(
            target=_store_worker, args=(cfg.dicom.port, cfg.dicom.ae_title, share, results, lock), daemon=True
        )
        for share in shares
        if share
    ]
    for thread in threads:
        thread.start()
    pending = {ds.StudyInstanceUID for ds in studies}
    done_at: dict[str, float] = {}
    final_status: dict[str, str] = {}
    deadline = started + timeout_s
    while pending and time.perf_counter() < deadline:
        for uid in list(pending):
            study = db.get_study(uid)
            if study is not None and study.status not in ("received", "processing"):
                done_at[uid] = time.perf_counter()
                final_status[uid] = study.status
                pending.discard(uid)
        if pending:
            time.sleep(POLL_S)
    for thread in threads:
        thread.join(timeout=5)
    elapsed = max(done_at.values(), default=time.perf_counter()) - started
    ok = [uid for uid, status in final_status.items() if status == "ai_read"]
    latencies = [(done_at[uid] - results[uid]["sent"]) * 1000.0 for uid in ok if results.get(uid, {}).get("sent")]
    store_ms = [(r["stored"] - r["sent"]) * 1000.0 for r in results.values() if r.get("sent")]
    return {
        "concurrency": concurrency,
        "studies": len(studies),
        "ai_read": len(ok),
        "failures": len(studies) - len(ok),
        "timed_out": len(pending),
        "other_statuses": sorted({s for s in final_status.values() if s != "ai_read"}),
        "per_s": len(ok) / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "c_store_p50_ms": percentile(store_ms, 50),
    }


def whole_read_in_process(reader, studies: list, batch: int) -> float:
    """Studies/s of the whole read in one process, the same work the served path does per study: the
    DICOM bytes decoded, the acceptance check, the batched read with heatmaps on the image, and the SR
    and Secondary Capture built and encoded (``serving.results.outbound.result_objects``, as the
    reading room does; no store, no network)."""
    import io  # noqa: PLC0415

    import pydicom  # noqa: PLC0415

    from datasets.imaging.dicom import read_dicom_image  # noqa: PLC0415
    from models.cxr.overlay import render_deferred_heatmaps  # noqa: PLC0415
    from serving.ingest.dicom import encode  # noqa: PLC0415
    from serving.results.outbound import result_objects  # noqa: PLC0415

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


def dicom_paced(cfg, db, studies: list, rate_per_s: float, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send ``studies`` one association each at ``rate_per_s`` (open loop, like clinics sending one
    film at a time); latency from each C-STORE until its row leaves ``received``/``processing``."""
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    threads = []
    started = time.perf_counter()
    for index, ds in enumerate(studies):
        delay = started + index / rate_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(
            target=_store_worker, args=(cfg.dicom.port, cfg.dicom.ae_title, [ds], results, lock), daemon=True
        )
        thread.start()
        threads.append(thread)
    pending = {ds.StudyInstanceUID for ds in studies}
    done_at: dict[str, float] = {}
    statuses: dict[str, str] = {}
    deadline = time.perf_counter() + timeout_s
    while pending and time.perf_counter() < deadline:
        for uid in list(pending):
            study = db.get_study(uid)
            if study is not None and study.status not in ("received", "processing"):
                done_at[uid], statuses[uid] = time.perf_counter(), study.status
                pending.discard(uid)
        if pending:
            time.sleep(POLL_S)
    for thread in threads:
        thread.join(timeout=5)
    ok = [uid for uid, status in statuses.items() if status == "ai_read"]
    latencies = [(done_at[uid] - results[uid]["sent"]) * 1000.0 for uid in ok if results.get(uid, {}).get("sent")]
    return {
        "rate_per_s": rate_per_s,
        "studies": len(studies),
        "ai_read": len(ok),
        "failures": len(studies) - len(ok),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def run_cxr_bench(
    json_path: str | None = None,
    quick: bool = False,
    triton: bool = True,
    haproxy_modes: tuple[bool, ...] = (False, True),
    batch: int = 32,
) -> int:
    import numpy as np  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    from bench.harness import Comparison, LoadPlan, run_comparison, write_result  # noqa: PLC0415
    from datasets.imaging.dicom import read_dicom_image  # noqa: PLC0415
    from models.cxr.pipeline import CxrPreReader  # noqa: PLC0415
    from serving.config import load_config  # noqa: PLC0415
    from serving.replica.triton.server import free_port  # noqa: PLC0415
    from serving.store.db import Database  # noqa: PLC0415

    console = Console(width=150)
    cfg_loaded = load_config().resolved()
    base_cfg, temp_registry = _ensure_cxr_registry(cfg_loaded, quick, console)
    plan = LoadPlan(
        batch=batch,
        concurrencies=[1, 4] if quick else [1, 2, 4, 8],
        requests=12 if quick else 40,
        half_load_requests=12 if quick else 40,
    )
    n_studies = 12 if quick else 32
    concurrencies = [1, 4] if quick else [1, 4, 8]
    n_images = 16 if quick else 40

    pngs = nih_pngs()
    records = [read_dicom_image(ds) for ds in wrapped_studies(pngs, n_images)]
    model = base_cfg.models["cxr"]
    in_process: dict[str, float] = {}
    reader = None
    for heatmaps in (False, True):
        reader = CxrPreReader.from_registry(
            base_cfg.registry.open(), model.ref, base_cfg.triage_path("cxr"), backend="onnxruntime", heatmaps=heatmaps
        )
        if heatmaps and not reader.heatmaps_available:
            break
        key = "with_heatmaps" if heatmaps else "no_heatmaps"
        in_process[key] = batched_reads_per_s(reader, records, base_cfg.deployments.cxr.max_batch_size)
        console.print(f"in-process pre-read ({key}): {in_process[key]:.1f} images/s")
    tensors = np.stack([reader.preprocess(records[i % len(records)])[0] for i in range(plan.batch)]).astype(np.float32)
    whole_per_s = None
    if reader is not None and reader.heatmaps_available:
        whole_per_s = whole_read_in_process(
            reader, wrapped_studies(pngs, n_images), base_cfg.deployments.cxr.max_batch_size
        )
        console.print(
            f"in-process whole read (decode, acceptance, read, heatmaps, SR + SC): {whole_per_s:.2f} studies/s"
        )
    n_paced = 10 if quick else 30
    studies = wrapped_studies(pngs, (n_studies * len(concurrencies) + 4 + n_paced) * len(haproxy_modes))
    used = [0]

    def take(n: int) -> list:
        chunk = studies[used[0] : used[0] + n]
        used[0] += n
        return chunk

    def full_path(cfg, base, say) -> list[dict]:
        db = Database(cfg.database.url)
        time.sleep(1.0)  # the SCP thread binds its port as the ingress starts
        warm = dicom_load(cfg, db, take(4), 2)
        say(f"  C-STORE warm-up: {warm['ai_read']}/{warm['studies']} ai_read {warm['other_statuses']}")
        rows = []
        for concurrency in concurrencies:
            row = dicom_load(cfg, db, take(n_studies), concurrency)
            row["label"] = f"whole pre-read: C-STORE → worklist ai_read (stable {STABLE_S} s, poll {DISPATCH_POLL_S} s)"
            row["requests"] = row["studies"]
            say(
                f"  C-STORE c={concurrency}: {row['per_s']:.2f} studies/s p50 {row['p50_ms']:.0f} ms "
                f"failures {row['failures']} {row['other_statuses']}"
            )
            rows.append(row)
        paced = dicom_paced(cfg, db, take(n_paced), 1.0)
        paced.update(
            label="whole pre-read at 1 study/s (open loop): C-STORE → ai_read",
            concurrency="open",
            requests=paced["studies"],
            per_s=1.0,
        )
        say(
            f"  C-STORE at 1 study/s: p50 {paced['p50_ms']:.0f} ms p95 {paced['p95_ms']:.0f} ms "
            f"(goal p95 ≤ 5000) failures {paced['failures']}"
        )
        rows.append(paced)
        best = max((row["per_s"] for row in rows if row.get("concurrency") != "open"), default=float("nan"))
        if whole_per_s:
            say(
                f"  served whole path ÷ in-process whole read: {best:.2f} / {whole_per_s:.2f} = "
                f"{best / whole_per_s:.2f} (goal ≥ 0.8)"
            )
        return rows

    extra = [
        {
            "label": f"whole pre-read in-process, batch {base_cfg.deployments.cxr.max_batch_size}, "
            f"{key.replace('_', ' ')}",
            "per_s": value,
        }
        for key, value in in_process.items()
    ]
    job = Comparison(
        task="cxr",
        unit="images",
        base_cfg=base_cfg,
        tensors=tensors,
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
        full_path=full_path,
        extra_rows=extra,
    )
    try:
        result = run_comparison(job, console)
    finally:
        if temp_registry is not None:
            shutil.rmtree(temp_registry, ignore_errors=True)
    served_best = [row["per_s"] for row in result["full_path"] if row.get("concurrency") != "open"]
    paced_rows = [row for row in result["full_path"] if row.get("concurrency") == "open"]
    ratio = max(served_best) / whole_per_s if served_best and whole_per_s else None
    result.update(
        in_process_whole_read_per_s=whole_per_s,
        served_over_in_process_whole=ratio,
        c_store_to_read_p95_ms_at_1_per_s=max((row["p95_ms"] for row in paced_rows), default=None),
    )
    console.print(
        f"[bold]CXR whole path: served ÷ in-process = {result['served_over_in_process_whole']} "
        f"(goal ≥ 0.8); C-STORE-to-read p95 at 1 study/s = {result['c_store_to_read_p95_ms_at_1_per_s']} ms "
        f"(goal ≤ 5000)[/]"
    )
    result.update(
        in_process_preread_no_heatmaps_per_s=in_process.get("no_heatmaps"),
        in_process_preread_with_heatmaps_per_s=in_process.get("with_heatmaps"),
        study_stable_seconds=STABLE_S,
        quick=quick,
        registry="temp (tests/data/cxr-tiny.yaml)" if temp_registry is not None else str(base_cfg.registry.uri),
    )
    write_result(result, json_path, REPO, console)
    failures = sum(level["failures"] for mode in result["serve"].values() for level in mode["levels"])
    failures += sum(row["failures"] for row in result["full_path"])
    return 0 if failures == 0 else 1

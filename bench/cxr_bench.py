"""`preread bench cxr`: chest X-ray pre-reads per second and latency, in-process and through DICOM
C-STORE on Ray Serve, measured in one run on one machine.

(a) in-process pre-read: CxrPreReader.read_batch on batches of NIH sample PNGs wrapped as DX DICOM
    (read back with read_dicom_image), with and without Grad-CAM heatmaps;
(b) C-STORE → worklist: the app on Ray Serve with its DICOM listener; each study is one wrapped NIH
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

from bench.serving_bench import batched_reads_per_s, percentile

REPO = Path(__file__).resolve().parents[1]
NIH_DIR = Path(os.environ.get("PREREAD_NIH_DIR", "/work/shared/data/cxr/nih"))
STABLE_S = 0.2
POLL_S = 0.05


def nih_pngs(limit: int | None = None) -> list[Path]:
    paths = sorted(NIH_DIR.rglob("*.png"))
    if not paths:
        raise SystemExit(f"bench cxr: no NIH PNGs under {NIH_DIR}")
    return paths[:limit] if limit else paths


def wrapped_studies(pngs: list[Path], n: int) -> list[Any]:
    """n DX datasets cycling through ``pngs``, each with fresh Study/Series/SOP UIDs."""
    from datasets.imaging.wrap import wrap_png_as_dicom

    return [wrap_png_as_dicom(pngs[i % len(pngs)]) for i in range(n)]


def bench_in_process(reader, records: list, batch_size: int = 8, repeats: int = 1) -> dict[str, float]:
    return {"per_s": batched_reads_per_s(reader, records, batch_size, repeats), "images": len(records) * repeats}


def _ensure_cxr_registry(base_cfg, quick: bool, console):
    """The serving config's registry if it holds a CXR model; otherwise, for --quick, a temp registry
    with the tiny test CXR model and the served ECG model copied in; otherwise train the demo model."""
    from models.registry import ModelRegistry
    from preread.cli import ensure_demo_models

    ensure_demo_models(base_cfg, ["ecg"])
    registry = base_cfg.registry.open()
    if not registry.is_empty("cxr") or not quick:
        ensure_demo_models(base_cfg, ["cxr"])
        return base_cfg, None
    from training.config import load_train_config
    from training.cxr import train_cxr

    temp = Path(tempfile.mkdtemp(prefix="preread-bench-registry-"))
    served_ecg = registry.resolve(base_cfg.models["ecg"].ref)
    temp_registry = ModelRegistry(temp)
    temp_registry.set_alias("ecg", "champion", temp_registry.register("ecg", served_ecg.path, served_ecg.card).version)
    config = load_train_config(REPO / "tests" / "data" / "cxr-tiny.yaml")
    config = config.model_copy(update={"checkpoint_dir": temp / "checkpoints"})
    console.print("[yellow]no CXR model registered: training the tiny test model (cxr-tiny.yaml) for --quick[/]")
    train_cxr(config, registry=temp_registry, progress=False)
    return base_cfg.model_copy(update={"registry": base_cfg.registry.model_copy(update={"uri": str(temp)})}), temp


def _store_worker(port: int, ae_title: str, studies: list, results: dict, lock: threading.Lock) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    ae = AE(ae_title="DEMOSITE")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation,
                             ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
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
    threads = [threading.Thread(target=_store_worker, args=(cfg.dicom.port, cfg.dicom.ae_title, share, results, lock),
                                daemon=True) for share in shares if share]
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
        "concurrency": concurrency, "studies": len(studies), "ai_read": len(ok),
        "failures": len(studies) - len(ok), "timed_out": len(pending),
        "other_statuses": sorted({s for s in final_status.values() if s != "ai_read"}),
        "per_s": len(ok) / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99), "c_store_p50_ms": percentile(store_ms, 50),
    }


def run_cxr_bench(json_path: str | None = None, quick: bool = False) -> int:
    import json

    import ray
    from ray import serve
    from rich.console import Console
    from rich.table import Table

    from datasets.imaging.dicom import read_dicom_image
    from models.cxr.pipeline import CxrPreReader
    from serving.app import build_app
    from serving.config import load_config
    from serving.store.db import Database

    console = Console(width=140)
    cfg_loaded = load_config().resolved()
    base_cfg, temp_registry = _ensure_cxr_registry(cfg_loaded, quick, console)
    n_studies = 16 if quick else 48
    concurrencies = [1, 4] if quick else [1, 4, 8]
    n_images = 16 if quick else 40

    pngs = nih_pngs()
    records = [read_dicom_image(ds) for ds in wrapped_studies(pngs, n_images)]
    model = base_cfg.models["cxr"]
    in_process: dict[str, dict[str, float]] = {}
    identity: dict[str, Any] = {}
    device = "cpu"
    for heatmaps in (False, True):
        reader = CxrPreReader.from_registry(base_cfg.registry.open(), model.ref, base_cfg.triage_path("cxr"),
                                            backend=model.backend, heatmaps=heatmaps,
                                            intra_op_threads=model.intra_op_threads)
        if heatmaps and not reader.heatmaps_available:
            break
        identity, device = reader.model_identity, str(getattr(reader.backend, "device", "cpu"))
        key = "with_heatmaps" if heatmaps else "no_heatmaps"
        in_process[key] = bench_in_process(reader, records, batch_size=base_cfg.deployments.cxr.max_batch_size)
        console.print(f"in-process ({key}): {in_process[key]['per_s']:.1f} images/s")
    console.print(f"[bold]CXR benchmark[/] model {identity.get('name')} v{identity.get('version')}"
                  f" ({identity.get('architecture')}, {identity.get('backend')}) on {device}")
    # The served deployment loads heatmaps when the model has a CAM network: compare like with like.
    reference = in_process.get("with_heatmaps", in_process["no_heatmaps"])["per_s"]

    state = Path(tempfile.mkdtemp(prefix="preread-bench-cxr-"))
    dicom_port = int(os.environ.get("PREREAD_BENCH_DICOM_PORT", "11190"))
    cfg = base_cfg.model_copy(update={
        # build_app always binds the ECG deployment, so the ECG model stays; CXR is what is measured.
        "models": {"ecg": base_cfg.models["ecg"], "cxr": base_cfg.models["cxr"]},
        "dicom": base_cfg.dicom.model_copy(update={"enabled": True, "port": dicom_port,
                                                   "study_stable_seconds": STABLE_S, "poll_seconds": POLL_S,
                                                   "results_destination": None}),
        "http": base_cfg.http.model_copy(update={"port": 8766}),
        "storage": base_cfg.storage.model_copy(update={"root": state / "objects"}),
        "database": base_cfg.database.model_copy(update={"url": f"sqlite:///{state / 'bench.db'}"}),
        "auth": base_cfg.auth.model_copy(update={"secret_file": state / "secret.key"}),
    })
    db = Database(cfg.database.url)
    db.migrate()
    studies = wrapped_studies(pngs, n_studies * len(concurrencies) + 4)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": cfg.http.port})
        serve.run(build_app(cfg), name="preread", route_prefix="/")
        time.sleep(1.0)  # the SCP thread binds its port as the ingress starts
        warm = dicom_load(cfg, db, studies[-4:], 2)
        console.print(f"warm-up: {warm['ai_read']}/{warm['studies']} ai_read, statuses {warm['other_statuses']}")
        for i, concurrency in enumerate(concurrencies):
            row = dicom_load(cfg, db, studies[i * n_studies : (i + 1) * n_studies], concurrency)
            rows.append(row)
            console.print(f"C-STORE c={concurrency}: {row['per_s']:.2f} studies/s p50 {row['p50_ms']:.0f} ms "
                          f"p95 {row['p95_ms']:.0f} ms failures {row['failures']} {row['other_statuses']}")
    finally:
        serve.shutdown()
        ray.shutdown()
        if temp_registry is not None:
            shutil.rmtree(temp_registry, ignore_errors=True)

    best = max(rows, key=lambda r: r["per_s"])
    table = Table(title=f"preread CXR serving benchmark (one run, this machine; study_stable_seconds={STABLE_S})")
    for column in ("path", "concurrency", "studies/s", "p50 ms", "p95 ms", "p99 ms", "÷ in-process"):
        table.add_column(column, justify="right")
    bs = base_cfg.deployments.cxr.max_batch_size
    for key, label in (("no_heatmaps", "no heatmaps"), ("with_heatmaps", "with Grad-CAM")):
        if key in in_process:
            table.add_row(f"(a) in-process read_batch, batch {bs}, {label}", "-", f"{in_process[key]['per_s']:.2f}",
                          "", "", "", f"{in_process[key]['per_s'] / reference:.2f}")
    for row in rows:
        table.add_row("(b) C-STORE → worklist ai_read (Ray Serve)", str(row["concurrency"]), f"{row['per_s']:.2f}",
                      f"{row['p50_ms']:.0f}", f"{row['p95_ms']:.0f}", f"{row['p99_ms']:.0f}",
                      f"{row['per_s'] / reference:.2f}")
    console.print(table)
    result = {
        "task": "cxr", "model": identity, "device": device, "cpu_count": os.cpu_count(),
        "in_process_per_s": reference,
        "in_process_no_heatmaps_per_s": in_process["no_heatmaps"]["per_s"],
        "in_process_with_heatmaps_per_s": in_process.get("with_heatmaps", {}).get("per_s"),
        "serve_per_s": best["per_s"], "triton_per_s": None,
        "serve_over_in_process": best["per_s"] / reference,
        "p50_ms": best["p50_ms"], "p95_ms": best["p95_ms"], "p99_ms": best["p99_ms"],
        "study_stable_seconds": STABLE_S, "dicom": rows, "quick": quick,
        "registry": "temp (tests/data/cxr-tiny.yaml)" if temp_registry is not None else base_cfg.registry.open().location,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(json_path) if json_path else REPO / "bench" / "results" / "cxr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results written to {out}")
    return 0 if all(r["failures"] == 0 for r in rows) else 1

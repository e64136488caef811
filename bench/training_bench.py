"""`preread bench train`: training samples per second per model on this machine, measured in one run.

For each network the project trains (the ECG nets xresnet1d18 and inception1d at the demo width on
12 × 5000 inputs; the chest X-ray nets densenet_small and DenseNet121 at 224 × 224, one channel)
the bench times full training steps — forward, class-weighted BCE, backward, gradient clipping and
an AdamW step, as ``training.loop.fit`` runs them — on random inputs of the real shape:

- ``network``: the step alone (inputs already prepared);
- ``with augmentation``: the step plus the training augmentation of the batch (ECG:
  ``datasets.ecg.augment``; CXR: ``training.cxr.CxrAugment``, MONAI), which the loop runs on the
  same cores.

FLOPs per step come from ``torch.utils.flop_counter`` (forward + backward of convolutions and
matrix products); achieved GFLOP/s is set against this machine's fp32 matmul peak, measured in the
same run with the same threads (2048 × 2048 products, measured beside every model; the best
counts). Each figure is the fastest of several steps: on a shared machine the least disturbed one
(medians are in the JSON, with the load average before and after). The GPU path (AMP, channels-last) is not
measured here when no GPU is present; the table says so. Results: a table and JSON in
bench/results/training.json.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.ecg.augment import ecg_augment
from datasets.vocabulary.cxr_labels import CXR_LABEL_CODES
from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES
from models.cxr.network import build_cxr_model
from models.ecg.factory import build_ecg_model
from training.common import BatchAugment
from training.cxr import CxrAugment
from training.loop import MaskedBCE

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    task: str
    architecture: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    batch_size: int
    note: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("ecg", "xresnet1d18", {"width": 32, "input_pool": 5}, (12, 5000), 64, "demo ECG net (ecg-demo.yaml)"),
    Case("ecg", "inception1d", {"width": 32, "input_pool": 5}, (12, 5000), 64, "PTB-XL benchmark's best family"),
    Case("cxr", "densenet_small", {"in_channels": 1}, (1, 224, 224), 16, "demo CXR net (cxr-demo.yaml)"),
    Case("cxr", "densenet121", {"in_channels": 1}, (1, 224, 224), 8, "CheXNet-sized; a GPU model"),
]


def build(case: Case) -> tuple[nn.Module, int]:
    if case.task == "ecg":
        return build_ecg_model(case.architecture, len(ECG_LABEL_CODES), **case.params), len(ECG_LABEL_CODES)
    return build_cxr_model(case.architecture, len(CXR_LABEL_CODES), **case.params), len(CXR_LABEL_CODES)


def augmentation(case: Case):
    if case.task == "ecg":
        return BatchAugment(ecg_augment())
    return CxrAugment(case.input_shape[-1])


def matmul_peak_gflops(seconds: float = 1.5, n: int = 2048) -> float:
    """fp32 GEMM throughput of this process's torch threads (the best of several timed runs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415 - torch's FLOP counter loads its op tables; only when counting

    counter = FlopCounterMode(display=False)
    with counter:
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def time_steps(
    model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, warmup: int, augment
) -> tuple[list[float], list[float]]:
    """Seconds of each training step (the loop's step: loss, backward, clip, AdamW) without and
    with the batch's augmentation, the two interleaved so both see the same machine load."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    criterion = MaskedBCE(torch.ones(Y.shape[1]), masked=False)
    model.train()

    def step(xb_fn) -> float:
        start = time.perf_counter()
        loss = criterion(model(xb_fn()), Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - start

    plain, augmented = [], []
    for i in range(warmup + steps):
        t_plain = step(lambda: X)
        t_augmented = step(functools.partial(augment, X, seed=i))
        if i >= warmup:
            plain.append(t_plain)
            augmented.append(t_augmented)
    return plain, augmented


def bench_case(case: Case, steps: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model, n_labels = build(case)
    X = torch.randn(case.batch_size, *case.input_shape)
    Y = (torch.rand(case.batch_size, n_labels) < 0.3).float()
    flops = step_flops(model, X[:2], Y[:2]) // 2 * case.batch_size  # BatchNorm needs two samples
    plain, augmented = time_steps(model, X, Y, steps, warmup, augmentation(case))
    # The fastest step is the one least disturbed by other work on a shared machine (as timeit
    # does); the medians are kept in the JSON.
    network_s, augmented_s = min(plain), min(augmented)
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "task": case.task,
        "architecture": case.architecture,
        "params": case.params,
        "note": case.note,
        "input_shape": list(case.input_shape),
        "batch_size": case.batch_size,
        "parameters": parameters,
        "gflop_per_sample": flops / case.batch_size / 1e9,
        "step_s": network_s,
        "step_with_augmentation_s": augmented_s,
        "step_s_median": float(np.median(plain)),
        "step_with_augmentation_s_median": float(np.median(augmented)),
        "samples_per_s": case.batch_size / network_s,
        "samples_per_s_with_augmentation": case.batch_size / augmented_s,
        "achieved_gflops": flops / network_s / 1e9,
        "steps_timed": steps,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _measure(console, quick: bool, steps: int, warmup: int) -> tuple[list[dict[str, Any]], list[float]]:
    """Every case's figures, with the matmul peak measured beside each (the best is the machine's)."""
    rows, peaks = [], []
    for case in CASES:
        if quick and case.architecture == "densenet121":
            continue
        peaks.append(matmul_peak_gflops(0.3 if quick else 1.0))
        console.print(
            f"  {case.task} {case.architecture} (batch {case.batch_size}) ... [dim](matmul {peaks[-1]:.0f} GFLOP/s)[/]"
        )
        rows.append(bench_case(case, steps if case.architecture != "densenet121" else 4, warmup))
    peaks.append(matmul_peak_gflops(0.3 if quick else 1.0))
    return rows, peaks


def _print_table(console, rows: list[dict[str, Any]], threads: int, steps: int) -> None:
    """The training throughput table."""
    from rich.table import Table  # noqa: PLC0415 - rich loads only when a bench prints

    table = Table(
        title=f"Training throughput, CPU ({threads} threads), fp32 — fwd + bwd + AdamW step, best of {steps} steps"
    )
    for name in (
        "model",
        "input",
        "batch",
        "params",
        "GFLOP/sample",
        "samples/s",
        "with augment",
        "GFLOP/s",
        "÷ matmul peak",
    ):
        table.add_column(name, justify="right" if name not in ("model", "input") else "left")
    for row in rows:
        table.add_row(
            f"{row['task']} {row['architecture']}",
            "×".join(map(str, row["input_shape"])),
            str(row["batch_size"]),
            f"{row['parameters'] / 1e6:.2f} M",
            f"{row['gflop_per_sample']:.2f}",
            f"{row['samples_per_s']:.1f}",
            f"{row['samples_per_s_with_augmentation']:.1f}",
            f"{row['achieved_gflops']:.1f}",
            f"{row['fraction_of_peak']:.2f}",
        )
    console.print(table)


def run_training_bench(json_path: str | None = None, quick: bool = False) -> int:
    """`preread bench train`: the table, and the JSON (bench/results/training.json unless ``json_path``)."""
    from rich.console import Console  # noqa: PLC0415 - rich loads only when a bench prints

    console = Console(width=150)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    console.print(f"[bold]training bench[/] on {cpu_name()}, torch {torch.__version__}, {threads} threads")
    steps, warmup = (2, 1) if quick else (8, 2)
    rows, peaks = _measure(console, quick, steps, warmup)
    peak = max(peaks)
    for row in rows:
        row["fraction_of_peak"] = row["achieved_gflops"] / peak

    console.print(f"fp32 matmul peak {peak:.1f} GFLOP/s (2048², best of {len(peaks)} measurements in this run)")
    _print_table(console, rows, threads, steps)
    gpu = torch.cuda.is_available()
    console.print(
        "GPU (AMP + channels-last): "
        + ("present but not benched by this CPU table" if gpu else "not measured: no GPU on this machine")
    )
    # The load average says how much else ran on the cores meanwhile (a shared machine's numbers are noisy).
    load_after = os.getloadavg()
    console.print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; {os.cpu_count()} CPUs")
    result = {
        "machine": {
            "processor": cpu_name(),
            "threads": threads,
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
        },
        "load_average_before": load_before[0],
        "load_average_after": load_after[0],
        "matmul_peak_gflops": peak,
        "matmul_gflops_measurements": peaks,
        "quick": quick,
        "models": rows,
        "gpu_measured": False,
    }
    out = Path(json_path) if json_path else REPO / "bench" / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    console.print(f"results written to {out}")
    return 0

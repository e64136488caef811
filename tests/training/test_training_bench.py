"""The training bench's measuring code on a tiny case (a smoke test: no speed is asserted)."""

from __future__ import annotations

import json

import torch

from bench.training_bench import Case, bench_case, matmul_peak_gflops


def test_bench_case_reports_throughput_and_flops():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = bench_case(
            Case("ecg", "xresnet1d18", {"width": 4, "input_pool": 5, "layers": [1, 1, 1, 1]}, (12, 5000), 4),
            steps=1,
            warmup=0,
        )
        peak = matmul_peak_gflops(seconds=0.05, n=256)
    finally:
        torch.set_num_threads(threads)
    assert row["samples_per_s"] > 0 and row["samples_per_s_with_augmentation"] > 0
    assert 0 < row["gflop_per_sample"] < 1 and row["achieved_gflops"] > 0 and peak > 0
    json.dumps(row)

"""The comparison's result as a table: rows (a), (b), (c) and the whole pre-read, printed with rich
or written as markdown (docs/benchmarks.md; ``python -m bench.harness bench/results/ecg.json``).
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("path", "conc.", "{unit}/s", "p50 ms", "p95 ms", "p99 ms", "÷ (a)", "CPU ms/item", "GFLOP/s", "% peak")


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The result as table rows (COLUMNS): the printed table and the markdown of docs/benchmarks.md."""
    peak, flops = result["matmul_peak_gflops"], result["flops_per_item"]
    rows: list[tuple[str, ...]] = []

    def row(label, concurrency, per_s, level=None, ceiling=None, cpu=None):
        g = per_s * flops / 1e9 if per_s else None
        rows.append(
            (
                label,
                str(concurrency),
                f"{per_s:.1f}" if per_s else "-",
                *(f"{level[k]:.0f}" if level else "" for k in ("p50_ms", "p95_ms", "p99_ms")),
                f"{per_s / ceiling:.2f}" if ceiling else "",
                f"{cpu:.2f}" if cpu else "",
                f"{g:.1f}" if g else "",
                f"{100 * g / peak:.0f}" if g else "",
            )
        )

    for i, run in enumerate(result["in_process_runs"]):
        row(
            f"(a) ONNX Runtime in-process, batch {result['batch']} (run {i + 1})",
            "-",
            run["per_s"],
            cpu=run["cpu_ms_per_item"],
        )
    served = [("(c) Triton, Python backend + ORT", result["triton"])] if result["triton"] else []
    served = [
        (f"(b) preread v2 binary, Ray Serve {mode}", outcome) for mode, outcome in result["serve"].items()
    ] + served
    for label, outcome in served:
        if "error" in outcome:
            rows.append((label, "-", "not run", "", "", "", "", "", "", ""))
            continue
        ceiling = outcome["ceiling"]["per_s"]
        for level in outcome["levels"]:
            row(label, level["concurrency"], level["per_s"], level, ceiling, level.get("server_cpu_ms_per_item"))
        half = outcome["half_load"]
        row(f"{label}, half load ({half['rate_per_s']:.1f} req/s)", "open", half["per_s"], half, ceiling)
    for extra in result["extra"]:
        rows.append((extra["label"], "-", f"{extra['per_s']:.2f}", "", "", "", "", "", "", ""))
    for full in result["full_path"]:
        rows.append(
            (
                f"{full['label']}, {full['proxy']}",
                str(full["concurrency"]),
                f"{full['per_s']:.2f}",
                f"{full['p50_ms']:.0f}",
                f"{full['p95_ms']:.0f}",
                f"{full['p99_ms']:.0f}",
                "",
                "",
                "",
                "",
            )
        )
    return rows


def summary_line(result: dict[str, Any]) -> str:
    triton_ratio = f"{result['serve_over_triton']:.2f}" if result["serve_over_triton"] else "n/a"
    efficiency = ", ".join(f"{mode} {value:.2f}" for mode, value in result["cpu_efficiency"].items())
    return (
        f"(b)/(a) at saturation {result['serve_over_in_process']:.2f} (goal ≥ 0.85, {result['serve_proxy']}); "
        f"(b)/(c) {triton_ratio} (goal ≥ 1, each against its own (a)); p95 at half load ÷ model's batch time "
        f"{result['half_load_p95_over_model']:.2f} (goal ≤ 2); CPU per item (a) ÷ served: {efficiency}"
    )


def print_table(result: dict[str, Any], console) -> None:
    from rich.table import Table  # noqa: PLC0415 - rich loads only when a bench prints

    table = Table(
        title=f"preread {result['task'].upper()} serving benchmark — one run, this machine "
        f"(batch {result['batch']}, {result['threads']} ORT threads, "
        f"matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s on all cores)"
    )
    for column in COLUMNS:
        table.add_column(column.format(unit=result["unit"]), justify="right")
    for cells in table_rows(result):
        table.add_row(*cells)
    console.print(table)
    console.print(summary_line(result))


def markdown_table(result: dict[str, Any]) -> str:
    """The same table in markdown (``python -m bench.harness bench/results/ecg.json``)."""
    header = [c.format(unit=result["unit"]) for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    return "\n".join(lines) + "\n\n" + summary_line(result) + "\n"

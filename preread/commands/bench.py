"""`preread bench {ecg,cxr,train,timings,send}`: the benchmarks of bench/, each a printed table and a
JSON file."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """Declare `preread bench TASK [--json FILE] [--quick] ...`."""
    parser = sub.add_parser(
        "bench",
        help="serving benchmark: in-process vs Ray Serve vs Triton; "
        "`bench train`: training samples/s per model; "
        "`bench send`: the clinic sender on a thin link",
    )
    parser.add_argument("task", choices=["ecg", "cxr", "train", "timings", "send"])
    parser.add_argument("--json", help="write results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--no-triton", action="store_true", help="skip the Triton row")
    parser.add_argument(
        "--whole-read-only",
        action="store_true",
        help="ecg: only the whole pre-read in-process table (no Ray Serve, no Triton)",
    )
    parser.add_argument("--batch", type=int, default=32, help="tensors per request and per batch on every path")
    parser.add_argument(
        "--haproxy",
        choices=["on", "off", "both"],
        default="both",
        help="Ray Serve's HAProxy ingress for the HTTP rows (default: measure both)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the named benchmark (each loads only its own stack)."""
    if args.task == "send":
        from bench.send_bench import run_send_bench  # noqa: PLC0415 - a bench loads its own stack only when run

        return run_send_bench(json_path=args.json, quick=args.quick)
    if args.task == "train":
        from bench.training_bench import run_training_bench  # noqa: PLC0415 - a bench loads its own stack only when run

        return run_training_bench(json_path=args.json, quick=args.quick)
    if args.task == "timings":
        from bench.timing_bench import run_timing_bench  # noqa: PLC0415 - a bench loads its own stack only when run

        return run_timing_bench(json_path=args.json, quick=args.quick)
    from bench.serving_bench import run_bench  # noqa: PLC0415 - a bench loads its own stack only when run

    return run_bench(
        args.task,
        json_path=args.json,
        quick=args.quick,
        triton=not args.no_triton,
        haproxy=args.haproxy,
        batch=args.batch,
        whole_read_only=args.whole_read_only,
    )

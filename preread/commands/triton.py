"""`preread triton`: a Triton Inference Server on the registered models (a model repository written
from the serving config, then tritonserver on it until SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from preread.commands.signals import stop_on_signals


def add_parser(sub) -> None:
    """Declare `preread triton [--config FILE] [--models A,B] [--flavour ...] [ports] [--export-only]`."""
    parser = sub.add_parser("triton", help="run a Triton Inference Server on the registered models")
    parser.add_argument("--config", help="serving config (models, registry, batching); default configs/serving.yaml")
    parser.add_argument("--models", help="comma-separated model names (default: all configured)")
    parser.add_argument("--repository", help="write the model repository here (default: a temp folder)")
    parser.add_argument(
        "--flavour",
        choices=["python", "onnxruntime"],
        default="python",
        help="python: our ORT backend inside Triton's Python backend (the pytriton wheel); "
        "onnxruntime: Triton's own ONNX Runtime backend (a full Triton install)",
    )
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per model instance")
    parser.add_argument(
        "--priority-levels",
        action="store_true",
        help="Triton's batcher serves priority 1 (critical) before 3 (routine); costs throughput "
        "in Triton 2.51 when 4+ requests queue (docs/serving.md)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8100)
    parser.add_argument("--grpc-port", type=int, default=8101)
    parser.add_argument("--metrics-port", type=int, default=8102)
    parser.add_argument("--log-file", help="tritonserver's log (default: in its temporary workspace)")
    parser.add_argument("--export-only", action="store_true", help="write the repository and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the model repository and run tritonserver on it (``--export-only``: just write it)."""
    from serving.config import load_config  # noqa: PLC0415 - a subcommand loads its package only when run
    from serving.replica.triton.repository import write_repository  # noqa: PLC0415 - a subcommand loads its package only when run

    cfg = load_config(args.config).resolved()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(cfg.models)
    repository = Path(args.repository or tempfile.mkdtemp(prefix="preread-triton-repo-"))
    try:
        written = write_repository(
            repository,
            cfg,
            models,
            flavour=args.flavour,
            intra_op_threads=args.threads,
            priority_levels=args.priority_levels,
        )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, folder in written.items():
        print(f"[preread] Triton model {name}: {folder}", flush=True)
    if args.export_only:
        return 0
    return _serve(args, repository, list(written))


def _serve(args: argparse.Namespace, repository: Path, models: list[str]) -> int:
    """tritonserver on ``repository`` until SIGINT/SIGTERM; 1 if it cannot start or exits."""
    from serving.replica.triton.server import TritonNotInstalled, TritonServer, TritonStartError  # noqa: PLC0415 - a subcommand loads its package only when run

    server = TritonServer(
        repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
    )
    try:
        server.start()
    except (TritonNotInstalled, TritonStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"[preread] Triton serving {', '.join(models)}: HTTP {server.http_url}, gRPC {server.grpc_url}, "
        f"metrics :{server.metrics_port}",
        flush=True,
    )
    print(
        f"[preread] to read through it, in the serving config: models.<model>.backend: triton, "
        f"triton: {{url: {server.grpc_url}, protocol: grpc}}",
        flush=True,
    )
    stop = stop_on_signals()
    while not stop.wait(1.0):
        if server.process is None or server.process.poll() is not None:
            print(f"error: tritonserver exited:\n{server.log_tail()}", file=sys.stderr)
            return 1
    server.stop()
    return 0

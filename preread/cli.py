"""`preread` — serve, token, train, evaluate, models, bench (see shared INTERFACES.md).

The CLI is the one place that ties the capabilities together: it may train a demo model before it
starts serving, so serving/ itself never imports training/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path


def open_cli_registry(args: argparse.Namespace):
    """``--registry`` (a folder or an MLflow URI), else the serving config's registry section."""
    from models.registry import open_registry  # noqa: PLC0415
    from serving.config import load_config  # noqa: PLC0415

    if getattr(args, "registry", None):
        return open_registry(args.registry)
    return load_config(getattr(args, "serving_config", None)).resolved().registry.open()


# --- commands ------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from serving.config import load_config  # noqa: PLC0415
    from training.demo import ensure_demo_models  # torch and Ray: loaded by the commands that need them  # noqa: PLC0415

    cfg = load_config(args.config).resolved()
    if args.port:
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"port": args.port})})
    ensure_demo_models(cfg)

    import ray  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from serving.app import deploy  # noqa: PLC0415
    from serving.store.db import Database  # noqa: PLC0415

    Database(cfg.database.url).migrate()  # once, here, so replicas never race on the schema
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cfg.deployments.http_proxy == "haproxy":  # read by Ray Serve at start: set before ray.init
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    ray.init(
        address="local",
        num_cpus=cfg.ray_num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )
    from serving import logs, tls  # noqa: PLC0415

    logs.install()  # secrets and patient names never reach the driver's log either
    serve.start(http_options=tls.http_options(cfg))  # HTTPS when tls.http is configured
    deploy(cfg)  # the model applications (/v2/models/<model>), then the ingress (/)
    base = f"{tls.scheme(cfg)}://{cfg.http.host}:{cfg.http.port}"
    print(f"[preread] serving on {base}  (health: {base}/readyz, API docs: {base}/docs)", flush=True)
    print(
        "[preread] a token for the demo site:  preread token --user demo-doctor --role grassroots --sites demo",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("[preread] stopping ...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from datetime import timedelta  # noqa: PLC0415

    from serving.auth.tokens import SecretMissing, TokenService, read_secret  # noqa: PLC0415
    from serving.config import load_config  # noqa: PLC0415

    # The running service's config (--config, $PREREAD_CONFIG, else the repository's); its relative
    # state paths are the service's working directory's: here, or the folder above configs/.
    raw = load_config(args.config)
    candidates = [raw.resolved().auth.secret_file, raw.resolved(raw.config_dir.parent).auth.secret_file]
    try:
        secret = read_secret(candidates)
    except SecretMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = raw.resolved()
    tokens = TokenService(secret, cfg.auth.token_ttl_hours)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()] if args.sites else []
    unknown = [s for s in sites if s != "*" and s not in cfg.site_ids()]
    if unknown:
        print(
            f"error: unknown site(s) {', '.join(unknown)}; configured: {', '.join(sorted(cfg.site_ids()))}",
            file=sys.stderr,
        )
        return 2
    ttl = timedelta(hours=args.ttl_hours) if args.ttl_hours else None
    try:
        print(tokens.issue(args.user, args.role, sites, ttl=ttl))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from models.registry import RegistryUnavailable  # noqa: PLC0415
    from training.config import TrainConfigError  # noqa: PLC0415
    from training.demo import train_from_config  # noqa: PLC0415
    from training.tracking import RegistrationFailed, TrackingError  # noqa: PLC0415

    try:
        registry = open_cli_registry(args)
        registered = train_from_config(args.task, Path(args.config), registry)
    except (TrainConfigError, TrackingError, RegistryUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RegistrationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run = f", run {registered.run_id}" if registered.run_id else ""
    print(
        f"[preread] registered {registered.name} version {registered.version} "
        f"aliases {sorted(registered.aliases)} in {registry.location}{run}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import ModelNotFound, RegistryUnavailable  # noqa: PLC0415

    try:
        return _models(args, open_cli_registry(args))
    except (ModelNotFound, RegistryUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _models(args: argparse.Namespace, registry) -> int:
    if args.models_command == "list":
        from models.registry import ModelNotFound  # noqa: PLC0415

        rows = []
        for name in registry.names():
            for version in registry.version_numbers(name):
                try:
                    model = registry.resolve(f"{name}/{version}")
                except ModelNotFound as exc:  # e.g. a version another tool registered under the same name
                    rows.append({"name": name, "version": version, "error": str(exc)})
                    continue
                rows.append(
                    {
                        "name": name,
                        "version": model.version,
                        "aliases": sorted(model.aliases),
                        "architecture": model.card.architecture,
                        "demo": model.card.demo,
                        "run_id": model.run_id,
                        "metrics": model.card.metrics,
                    }
                )
        print(json.dumps(rows, indent=2, default=str))
    elif args.models_command == "promote":
        name, _, version = args.model.partition("/")
        if not version.isdigit():
            print("error: give NAME/VERSION, e.g. ecg/3", file=sys.stderr)
            return 2
        if getattr(args, "gate", False):
            from evaluation.evaluate import promote_with_gate  # noqa: PLC0415 - CLI subcommand: loaded when run

            if not promote_with_gate(registry, name, int(version), args.alias, args.data, args.gate_config):
                return 1
            return 0
        was = registry.aliases(name).get(args.alias)
        registry.set_alias(name, args.alias, int(version))
        print(
            f"[preread] {name}@{args.alias} → version {version}"
            + (f" (was {was})" if was else "")
            + f" in {registry.location}; running services follow within models.*.reload_interval_s"
        )
    elif args.models_command == "export":
        from models.export import export_registered  # noqa: PLC0415

        out = export_registered(registry.resolve(args.model), Path(args.out), fmt=args.format)
        print(f"[preread] exported {args.model} to {out}")
    elif args.models_command == "register":
        from models.card import ModelCard  # noqa: PLC0415
        from models.export import check_model_folder  # noqa: PLC0415

        folder = Path(args.folder)
        card = ModelCard.load(folder)  # FileNotFoundError / a validation error naming the field
        name = args.name or card.name
        checks = check_model_folder(folder, card)
        for line in checks:
            print(f"  ok   {line}")
        registered = registry.register(name, folder, card)
        if args.alias:
            registered = registry.set_alias(name, args.alias, registered.version)
        print(
            f"[preread] registered {name} version {registered.version} aliases {sorted(registered.aliases)} "
            f"in {registry.location}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.cli import cmd_evaluate as run  # noqa: PLC0415
    from models.registry import RegistryUnavailable  # noqa: PLC0415

    if not args.registry:  # the registry the service uses, as for `preread models`
        try:
            args.registry = open_cli_registry(args)
        except (RegistryUnavailable, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.task == "send":
        from bench.send_bench import run_send_bench  # noqa: PLC0415

        return run_send_bench(json_path=args.json, quick=args.quick)
    if args.task == "train":
        from bench.training_bench import run_training_bench  # noqa: PLC0415

        return run_training_bench(json_path=args.json, quick=args.quick)
    if args.task == "timings":
        from bench.timing_bench import run_timing_bench  # noqa: PLC0415

        return run_timing_bench(json_path=args.json, quick=args.quick)
    from bench.serving_bench import run_bench  # noqa: PLC0415

    return run_bench(
        args.task,
        json_path=args.json,
        quick=args.quick,
        triton=not args.no_triton,
        haproxy=args.haproxy,
        batch=args.batch,
        whole_read_only=args.whole_read_only,
    )


def cmd_triton(args: argparse.Namespace) -> int:
    """Write a Triton model repository for the served models and run tritonserver on it."""
    import tempfile  # noqa: PLC0415

    from serving.config import load_config  # noqa: PLC0415
    from serving.replica.triton.repository import write_repository  # noqa: PLC0415
    from serving.replica.triton.server import TritonNotInstalled, TritonServer, TritonStartError  # noqa: PLC0415

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
        f"[preread] Triton serving {', '.join(written)}: HTTP {server.http_url}, gRPC {server.grpc_url}, "
        f"metrics :{server.metrics_port}",
        flush=True,
    )
    print(
        f"[preread] to read through it, in the serving config: models.<model>.backend: triton, "
        f"triton: {{url: {server.grpc_url}, protocol: grpc}}",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if server.process is None or server.process.poll() is not None:
            print(f"error: tritonserver exited:\n{server.log_tail()}", file=sys.stderr)
            return 1
    server.stop()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from preread.send.cli import main  # noqa: PLC0415

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preread", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve_p = sub.add_parser("serve", help="run the service (local Ray + Serve, SQLite, files under ./var/)")
    serve_p.add_argument("--config", help="serving config YAML (default configs/serving.yaml)")
    serve_p.add_argument("--port", type=int, help="override the HTTP port")
    serve_p.set_defaults(func=cmd_serve)

    send_p = sub.add_parser("send", help="the clinic's store-and-forward sender (docs/sender.md)")
    from preread.send.cli import add_arguments as add_send_arguments  # noqa: PLC0415

    add_send_arguments(send_p)
    send_p.set_defaults(func=cmd_send)

    token_p = sub.add_parser("token", help="issue an access token signed with the deployment's secret")
    token_p.add_argument("--user", required=True)
    token_p.add_argument("--role", required=True, choices=["grassroots", "reader", "datasci", "admin"])
    token_p.add_argument("--sites", default="", help="comma-separated site ids, or *")
    token_p.add_argument("--ttl-hours", type=float)
    token_p.add_argument(
        "--config",
        help="the running service's config (default $PREREAD_CONFIG, else "
        "configs/serving.yaml); its secret is read, never created",
    )
    token_p.set_defaults(func=cmd_token)

    train_p = sub.add_parser("train", help="train a model and register it")
    train_p.add_argument("task", choices=["ecg", "cxr"])
    train_p.add_argument("--config", required=True, help="training config YAML (configs/train/...)")
    train_p.add_argument(
        "--registry",
        help="registry: an MLflow URI (sqlite:///…, http(s)://…) or a folder "
        "(default: the serving config's; MLflow under var/mlflow)",
    )
    train_p.add_argument("--serving-config")
    train_p.set_defaults(func=cmd_train)

    models_p = sub.add_parser("models", help="model registry: list, promote, export, register")
    models_p.add_argument("--registry", help="an MLflow URI or a folder (default: the serving config's)")
    models_p.add_argument("--serving-config")
    models_sub = models_p.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list")
    promote_p = models_sub.add_parser("promote")
    promote_p.add_argument("model", help="NAME/VERSION")
    promote_p.add_argument("--alias", default="champion")
    promote_p.add_argument(
        "--gate",
        action="store_true",
        help="promote only if the version passes the gate against the current alias holder",
    )
    promote_p.add_argument("--data", help="FORMAT:PATH the gate compares on (required with --gate)")
    promote_p.add_argument("--gate-config", help="gate YAML (default configs/gate.yaml)")
    export_p = models_sub.add_parser("export")
    export_p.add_argument("model", help="NAME, NAME@ALIAS or NAME/VERSION")
    export_p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export_p.add_argument("--out", required=True)
    register_p = models_sub.add_parser(
        "register",
        help="register an exported model folder (card.json + "
        "model.onnx and/or model.pt), after shape and parity checks",
    )
    register_p.add_argument("folder")
    register_p.add_argument("--name", help="registered model name (default: the card's)")
    register_p.add_argument("--alias", help="also point this alias (e.g. challenger) at the new version")
    models_p.set_defaults(func=cmd_models)

    evaluate_p = sub.add_parser("evaluate", help="metrics with bootstrap CIs + HTML report for a registered model")
    from evaluation.cli import add_arguments as add_evaluate_arguments  # noqa: PLC0415

    add_evaluate_arguments(evaluate_p)
    evaluate_p.set_defaults(func=cmd_evaluate)

    bench_p = sub.add_parser(
        "bench",
        help="serving benchmark: in-process vs Ray Serve vs Triton; "
        "`bench train`: training samples/s per model; "
        "`bench send`: the clinic sender on a thin link",
    )
    bench_p.add_argument("task", choices=["ecg", "cxr", "train", "timings", "send"])
    bench_p.add_argument("--json", help="write results as JSON here")
    bench_p.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    bench_p.add_argument("--no-triton", action="store_true", help="skip the Triton row")
    bench_p.add_argument(
        "--whole-read-only",
        action="store_true",
        help="ecg: only the whole pre-read in-process table (no Ray Serve, no Triton)",
    )
    bench_p.add_argument("--batch", type=int, default=32, help="tensors per request and per batch on every path")
    bench_p.add_argument(
        "--haproxy",
        choices=["on", "off", "both"],
        default="both",
        help="Ray Serve's HAProxy ingress for the HTTP rows (default: measure both)",
    )
    bench_p.set_defaults(func=cmd_bench)

    triton_p = sub.add_parser("triton", help="run a Triton Inference Server on the registered models")
    triton_p.add_argument("--config", help="serving config (models, registry, batching); default configs/serving.yaml")
    triton_p.add_argument("--models", help="comma-separated model names (default: all configured)")
    triton_p.add_argument("--repository", help="write the model repository here (default: a temp folder)")
    triton_p.add_argument(
        "--flavour",
        choices=["python", "onnxruntime"],
        default="python",
        help="python: our ORT backend inside Triton's Python backend (the pytriton wheel); "
        "onnxruntime: Triton's own ONNX Runtime backend (a full Triton install)",
    )
    triton_p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per model instance")
    triton_p.add_argument(
        "--priority-levels",
        action="store_true",
        help="Triton's batcher serves priority 1 (critical) before 3 (routine); costs throughput "
        "in Triton 2.51 when 4+ requests queue (docs/serving.md)",
    )
    triton_p.add_argument("--host", default="127.0.0.1")
    triton_p.add_argument("--http-port", type=int, default=8100)
    triton_p.add_argument("--grpc-port", type=int, default=8101)
    triton_p.add_argument("--metrics-port", type=int, default=8102)
    triton_p.add_argument("--log-file", help="tritonserver's log (default: in its temporary workspace)")
    triton_p.add_argument("--export-only", action="store_true", help="write the repository and exit")
    triton_p.set_defaults(func=cmd_triton)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

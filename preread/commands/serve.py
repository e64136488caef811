"""`preread serve`: the service on a local Ray + Serve (training demo models first if the registry
is empty, so serving/ itself never imports training/)."""

from __future__ import annotations

import argparse
import logging
import os

from preread.commands.signals import stop_on_signals


def add_parser(sub) -> None:
    """Declare `preread serve [--config FILE] [--port N]`."""
    parser = sub.add_parser("serve", help="run the service (local Ray + Serve, SQLite, files under ./var/)")
    parser.add_argument("--config", help="serving config YAML (default configs/serving.yaml)")
    parser.add_argument("--port", type=int, help="override the HTTP port")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Migrate the database, start Ray and Serve, deploy, and serve until SIGINT/SIGTERM."""
    from serving.config import load_config  # noqa: PLC0415 - a subcommand loads its package only when run
    from training.demo import ensure_demo_models  # noqa: PLC0415 - torch and the training code, for `serve` only

    cfg = load_config(args.config).resolved()
    if args.port:
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"port": args.port})})
    ensure_demo_models(cfg)

    import ray  # noqa: PLC0415 - heavy; loaded only by `serve`
    from ray import serve  # noqa: PLC0415 - heavy; loaded only by `serve`

    from serving import logs, tls  # noqa: PLC0415 - a subcommand loads its package only when run
    from serving.app import deploy  # noqa: PLC0415 - the Ray Serve applications load Ray Serve
    from serving.store.db import Database  # noqa: PLC0415 - a subcommand loads its package only when run

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
    logs.install()  # secrets and patient names never reach the driver's log either
    serve.start(http_options=tls.http_options(cfg))  # HTTPS when tls.http is configured
    deploy(cfg)  # the model applications (/v2/models/<model>), then the ingress (/)
    base = f"{tls.scheme(cfg)}://{cfg.http.host}:{cfg.http.port}"
    print(f"[preread] serving on {base}  (health: {base}/readyz, API docs: {base}/docs)", flush=True)
    print(
        "[preread] a token for the demo site:  preread token --user demo-doctor --role grassroots --sites demo",
        flush=True,
    )
    stop_on_signals().wait()
    print("[preread] stopping ...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0

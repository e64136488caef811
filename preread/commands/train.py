"""`preread train {ecg,cxr} --config FILE`: train with the project's training code and register the model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preread.commands.registry_option import open_cli_registry


def add_parser(sub) -> None:
    """Declare `preread train TASK --config FILE [--registry URI] [--serving-config FILE]`."""
    parser = sub.add_parser("train", help="train a model and register it")
    parser.add_argument("task", choices=["ecg", "cxr"])
    parser.add_argument("--config", required=True, help="training config YAML (configs/train/...)")
    parser.add_argument(
        "--registry",
        help="registry: an MLflow URI (sqlite:///…, http(s)://…) or a folder "
        "(default: the serving config's; MLflow under var/mlflow)",
    )
    parser.add_argument("--serving-config")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and register; 2 for a bad config or an unreachable registry, 1 when registering fails."""
    from models.registry import RegistryUnavailable  # noqa: PLC0415 - a subcommand loads its package only when run
    from training.config import TrainConfigError  # noqa: PLC0415 - training loads torch: only for `train`
    from training.demo import train_from_config  # noqa: PLC0415 - training loads torch: only for `train`
    from training.tracking import RegistrationFailed, TrackingError  # noqa: PLC0415 - training loads torch: only for `train`

    try:
        registry = open_cli_registry(args)
        registered = train_from_config(args.task, Path(args.config), registry)
    except (TrainConfigError, TrackingError, RegistryUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RegistrationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run_note = f", run {registered.run_id}" if registered.run_id else ""
    print(
        f"[preread] registered {registered.name} version {registered.version} "
        f"aliases {sorted(registered.aliases)} in {registry.location}{run_note}"
    )
    return 0

"""`preread evaluate`: metrics with bootstrap intervals and an HTML report for a registered model
(evaluation/cli.py has the arguments and the work; this adds the service's registry as the default)."""

from __future__ import annotations

import argparse
import sys

from evaluation.cli import add_arguments, cmd_evaluate
from preread.commands.registry_option import open_cli_registry


def add_parser(sub) -> None:
    """Declare `preread evaluate` with evaluation's own arguments."""
    parser = sub.add_parser("evaluate", help="metrics with bootstrap CIs + HTML report for a registered model")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate against ``--registry``, else the registry the service uses (as `preread models` does)."""
    from models.registry import RegistryUnavailable  # noqa: PLC0415 - a subcommand loads its package only when run

    if not args.registry:
        try:
            args.registry = open_cli_registry(args)
        except (RegistryUnavailable, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return cmd_evaluate(args)

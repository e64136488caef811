"""The model registry a subcommand acts on (`train`, `models`, `evaluate`): ``--registry``, else the
serving config's."""

from __future__ import annotations

import argparse


def open_cli_registry(args: argparse.Namespace):
    """``--registry`` (a folder or an MLflow URI), else the serving config's registry section."""
    from models.registry import open_registry  # noqa: PLC0415 - loaded only by the subcommands that use a registry
    from serving.config import load_config  # noqa: PLC0415 - loaded only by the subcommands that use a registry

    if getattr(args, "registry", None):
        return open_registry(args.registry)
    return load_config(getattr(args, "serving_config", None)).resolved().registry.open()

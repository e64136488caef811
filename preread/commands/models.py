"""`preread models {list,promote,export,register}`: the model registry — versions, aliases
(champion/challenger), ONNX/TorchScript export, registering an exported folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from preread.commands.registry_option import open_cli_registry


def add_parser(sub) -> None:
    """Declare `preread models [--registry URI] {list,promote,export,register} ...`."""
    parser = sub.add_parser("models", help="model registry: list, promote, export, register")
    parser.add_argument("--registry", help="an MLflow URI or a folder (default: the serving config's)")
    parser.add_argument("--serving-config")
    models_sub = parser.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list")
    promote = models_sub.add_parser("promote")
    promote.add_argument("model", help="NAME/VERSION")
    promote.add_argument("--alias", default="champion")
    promote.add_argument(
        "--gate",
        action="store_true",
        help="promote only if the version passes the gate against the current alias holder",
    )
    promote.add_argument("--data", help="FORMAT:PATH the gate compares on (required with --gate)")
    promote.add_argument("--gate-config", help="gate YAML (default configs/gate.yaml)")
    export = models_sub.add_parser("export")
    export.add_argument("model", help="NAME, NAME@ALIAS or NAME/VERSION")
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    export.add_argument("--out", required=True)
    register = models_sub.add_parser(
        "register",
        help="register an exported model folder (card.json + "
        "model.onnx and/or model.pt), after shape and parity checks",
    )
    register.add_argument("folder")
    register.add_argument("--name", help="registered model name (default: the card's)")
    register.add_argument("--alias", help="also point this alias (e.g. challenger) at the new version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The registry subcommand; 2 with the reason for an unknown model or an unreachable registry."""
    from models.registry import ModelNotFound, RegistryUnavailable  # noqa: PLC0415 - a subcommand loads its package only when run

    actions = {"list": _list, "promote": _promote, "export": _export, "register": _register}
    try:
        return actions[args.models_command](args, open_cli_registry(args))
    except (ModelNotFound, RegistryUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _list(args: argparse.Namespace, registry) -> int:
    """Every version of every registered model as JSON (a version that cannot be resolved: its error)."""
    from models.registry import ModelNotFound  # noqa: PLC0415 - a subcommand loads its package only when run

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
    return 0


def _promote(args: argparse.Namespace, registry) -> int:
    """Point ``--alias`` at NAME/VERSION (``--gate``: only if it passes the gate against the holder)."""
    name, _, version = args.model.partition("/")
    if not version.isdigit():
        print("error: give NAME/VERSION, e.g. ecg/3", file=sys.stderr)
        return 2
    if getattr(args, "gate", False):
        from evaluation.evaluate import promote_with_gate  # noqa: PLC0415 - the gate's evaluation loads only with --gate

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
    return 0


def _export(args: argparse.Namespace, registry) -> int:
    """Write the model as ONNX or TorchScript under ``--out``."""
    from models.export import export_registered  # noqa: PLC0415 - loads torch and onnx: only for `export`

    out = export_registered(registry.resolve(args.model), Path(args.out), fmt=args.format)
    print(f"[preread] exported {args.model} to {out}")
    return 0


def _register(args: argparse.Namespace, registry) -> int:
    """Register an exported folder after its shape and parity checks (``--alias``: point it too)."""
    from models.card import ModelCard  # noqa: PLC0415 - a subcommand loads its package only when run
    from models.export import check_model_folder  # noqa: PLC0415 - loads torch and onnx: only for `register`

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

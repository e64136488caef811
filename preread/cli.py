"""`preread` — serve, token, train, evaluate, models, bench (see shared INTERFACES.md).

The CLI is the one place that ties the capabilities together: it may train a demo model before it
starts serving, so serving/ itself never imports training/. Each subcommand is a module of
preread/commands (its arguments and what it does).
"""

from __future__ import annotations

import argparse
import sys

from preread.commands import bench, evaluate, models, send, serve, token, train, triton

# In the order `preread --help` lists them.
SUBCOMMANDS = (serve, send, token, train, models, evaluate, bench, triton)


def build_parser() -> argparse.ArgumentParser:
    """The `preread` parser: one subparser per module of SUBCOMMANDS."""
    parser = argparse.ArgumentParser(prog="preread", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

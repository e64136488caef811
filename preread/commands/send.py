"""`preread send`: the clinic's store-and-forward sender (preread/send; docs/sender.md)."""

from __future__ import annotations

from preread.send.cli import add_arguments, main


def add_parser(sub) -> None:
    """Declare `preread send` with the sender's own arguments."""
    parser = sub.add_parser("send", help="the clinic's store-and-forward sender (docs/sender.md)")
    add_arguments(parser)
    parser.set_defaults(func=main)

"""`preread send [--config FILE] [FILE ...]`, `preread send --check`, `preread send --status`.

Also runs alone on the clinic PC as `python -m preread.send`, importing nothing of the service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from preread.send.accept import Accepted, Quarantined, Refused
from preread.send.app import Sender
from preread.send.check import run_checks
from preread.send.config import SendConfig, SendConfigError, load_send_config
from preread.send.view import render

DEFAULT_CONFIG = Path("configs") / "send.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="sender config YAML (default configs/send.yaml)")
    parser.add_argument("--check", action="store_true", help="test link, TLS, token, clock, disk and exit")
    parser.add_argument("--status", action="store_true", help="print each study's state and exit")
    parser.add_argument(
        "--until-done", action="store_true", help="exit once nothing is queued and every sent study has its AI read"
    )
    parser.add_argument("--no-view", action="store_true", help="log lines instead of the live table")
    parser.add_argument("files", nargs="*", type=Path, help="files or folders to queue (the originals stay)")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_send_config(args.config)
    except SendConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=False)
    if args.check:
        return _check(cfg, console)
    live = sys.stdout.isatty() and not args.no_view and not args.status
    _logging(cfg, console, live)
    sender = Sender(cfg, bell=live)
    if args.status:
        console.print(render(sender.queue, limit=10_000))
        return 0
    if args.files:
        refused = _queue_files(sender, args.files, console)
        if refused:
            return 1
    return _run(sender, console, live, args.until_done)


def _logging(cfg: SendConfig, console: Console, live: bool) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    file_handler = RotatingFileHandler(
        cfg.state_dir / "sender.log", maxBytes=5 * 2**20, backupCount=3, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    screen = RichHandler(console=console, show_path=False) if live else logging.StreamHandler(sys.stderr)
    screen.setLevel(logging.WARNING if live else logging.INFO)
    if not live:
        screen.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("preread.send")
    root.setLevel(logging.INFO)
    root.handlers[:] = [file_handler, screen]
    for noisy in ("pynetdicom", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _queue_files(sender: Sender, files: list[Path], console: Console) -> int:
    refused = 0
    for path, verdict in sender.add_paths(files):
        if isinstance(verdict, Accepted):
            line, style = f"queued      {path}" + ("" if verdict.created else "  (already queued)"), None
        elif isinstance(verdict, Quarantined):
            line, style = f"quarantined {path}: {verdict.reason} → {verdict.path}", "yellow"
        else:
            line, style = f"refused     {path}: {verdict.reason}", "red"
            refused += isinstance(verdict, Refused)
        console.print(line, style=style, soft_wrap=True, markup=False, highlight=False)
    return refused


def _run(sender: Sender, console: Console, live: bool, until_done: bool) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = sender.start()
    try:
        if live:
            with Live(render(sender.queue, sender.link_state), console=console, refresh_per_second=2) as view:
                while not stop.wait(1.0):
                    view.update(render(sender.queue, sender.link_state))
                    if until_done and sender.done():
                        break
        else:
            while not stop.wait(1.0):
                if until_done and sender.done():
                    break
            console.print(render(sender.queue, sender.link_state))  # where each study stands, once
    finally:
        sender.stop(threads)
    return 0


def _check(cfg: SendConfig, console: Console) -> int:
    failed = 0
    for line in run_checks(cfg):
        mark = "[green]ok  [/]" if line.ok and not line.warning else ("[yellow]warn[/]" if line.ok else "[red]FAIL[/]")
        failed += not line.ok
        console.print(f"{mark} {line.name:<12} {line.detail}")
    console.print("[green]ready to send[/]" if not failed else f"[red]{failed} check(s) failed[/]")
    return 0 if not failed else 1


def entry() -> int:
    parser = argparse.ArgumentParser(prog="preread-send", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main(parser.parse_args())

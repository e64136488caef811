"""`preread token`: an access token signed with the running service's secret (read, never created)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta


def add_parser(sub) -> None:
    """Declare `preread token --user NAME --role ROLE --sites A,B [--ttl-hours H] [--config FILE]`."""
    parser = sub.add_parser("token", help="issue an access token signed with the deployment's secret")
    parser.add_argument("--user", required=True)
    parser.add_argument("--role", required=True, choices=["grassroots", "reader", "datasci", "admin"])
    parser.add_argument("--sites", default="", help="comma-separated site ids, or *")
    parser.add_argument("--ttl-hours", type=float)
    parser.add_argument(
        "--config",
        help="the running service's config (default $PREREAD_CONFIG, else "
        "configs/serving.yaml); its secret is read, never created",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the token; 2 with the reason when the secret is missing or a site or role is unknown."""
    from serving.auth.tokens import SecretMissing, TokenService, read_secret  # noqa: PLC0415 - a subcommand loads its package only when run
    from serving.config import load_config  # noqa: PLC0415 - a subcommand loads its package only when run

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

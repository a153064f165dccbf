"""``webhooks prune``: delete old events with their deliveries and delivery log now.

The same pruning ``webhooks serve`` runs periodically (see core/retention.py),
by hand: after lowering the retention, or from cron when the periodic task is
off. Prints what it deleted (or, with --dry-run, what it would delete).
"""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service import config
from webhooks_service.commands._database import open_database
from webhooks_service.core import retention


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "prune",
        help="delete old events with their deliveries and delivery log",
        description=(
            "Delete events stored more than N days ago (default: the retention setting), "
            "with their deliveries and attempts, unless a delivery of the event is still "
            "pending. Runs in short batches; safe while the service is running."
        ),
    )
    parser.add_argument(
        "--older-than-days",
        type=_positive_int,
        default=None,
        metavar="N",
        help="prune what is older than N days instead of the retention_days setting",
    )
    parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    config.add_arguments(
        parser, ["database_url", "retention_days", "prune_batch_size", "prune_pause"]
    )
    parser.set_defaults(handler=_prune)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of days, at least 1")
    return value


def _prune(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    if args.older_than_days is None and settings.retention_days <= 0:
        print("retention is disabled (retention_days=0); nothing pruned")
        return 0
    engine = open_database(settings)
    try:
        result = retention.prune(
            engine, settings, older_than_days=args.older_than_days, dry_run=args.dry_run
        )
    finally:
        engine.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {result.events} events, {result.deliveries} deliveries, {result.attempts} attempts"
    )
    return 0

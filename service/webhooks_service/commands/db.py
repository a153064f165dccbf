"""``webhooks db upgrade``: apply pending schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service import config
from webhooks_service.commands._database import open_database
from webhooks_service.storage.db import shown_url


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("db", help="database schema management")
    dbsub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser(
        "upgrade",
        help="create the database or apply pending migrations (serve also does this)",
        description="Create the database and its schema, or bring an existing one up to "
        "date. The only operator command that creates a database.",
    )
    config.add_arguments(up, ["database_url"])
    up.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    engine = open_database(settings, create=True)
    engine.dispose()
    print(f"database at {shown_url(settings.database_url)} is up to date")
    return 0

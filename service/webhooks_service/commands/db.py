"""``webhooks db upgrade``: apply pending schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service import config
from webhooks_service.storage import db


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("db", help="database schema management")
    dbsub = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="apply pending migrations (serve also does this)")
    config.add_arguments(up, ["database_url"])
    up.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    engine = db.create_engine(settings.database_url)
    db.upgrade(engine)
    print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")
    return 0

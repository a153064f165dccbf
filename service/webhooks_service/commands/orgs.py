"""``webhooks orgs create NAME`` / ``webhooks orgs list``: the operator's org admin."""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service import config
from webhooks_service.commands._database import open_database
from webhooks_service.core import orgs


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "orgs", help="create and list organisations", description="Manage organisations."
    )
    orgsub = parser.add_subparsers(dest="orgs_command", required=True, metavar="ACTION")
    create = orgsub.add_parser(
        "create",
        help="create an organisation and print its id",
        description="Create an organisation; prints its id (org_…) on stdout.",
    )
    create.add_argument("name", help="display name of the organisation")
    config.add_arguments(create, ["database_url"])
    create.set_defaults(handler=_create)
    listing = orgsub.add_parser(
        "list",
        help="list organisations",
        description="List organisations: id, creation time and name, tab-separated.",
    )
    config.add_arguments(listing, ["database_url"])
    listing.set_defaults(handler=_list)


def _create(args: argparse.Namespace) -> int:
    engine = open_database(config.from_args(args))
    try:
        print(orgs.create_org(engine, args.name).id)
    finally:
        engine.dispose()
    return 0


def _list(args: argparse.Namespace) -> int:
    engine = open_database(config.from_args(args))
    try:
        for org in orgs.list_orgs(engine):
            print(f"{org.id}\t{org.created_at.isoformat(timespec='seconds')}\t{org.name}")
    finally:
        engine.dispose()
    return 0

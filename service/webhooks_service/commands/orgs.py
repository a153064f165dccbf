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
    verification = orgsub.add_parser(
        "verification",
        help="require endpoint ownership verification (on) or not (off)",
        description=(
            "With 'on', the organisation's new and re-pointed endpoints must echo a signed "
            "webhook.verification challenge before they receive events (their deliveries "
            "wait meanwhile); 'off' (the default) does not require it and releases the "
            "endpoints still pending (their deliveries are sent). Turning it on leaves "
            "existing endpoints as they are."
        ),
    )
    verification.add_argument("org_id", help="the organisation, org_…")
    verification.add_argument("state", choices=("on", "off"))
    config.add_arguments(verification, ["database_url"])
    verification.set_defaults(handler=_verification)


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


def _verification(args: argparse.Namespace) -> int:
    engine = open_database(config.from_args(args))
    try:
        released = orgs.set_endpoint_verification(engine, args.org_id, args.state == "on")
    finally:
        engine.dispose()
    if released:
        print(f"released {released} waiting deliveries")
    return 0

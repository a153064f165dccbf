"""``webhooks keys create``: issue an API key and print it, once.

Only a hash is stored, so the printed key cannot be shown again; issue a new
one if it is lost.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from webhooks_service import config
from webhooks_service.commands._database import open_database
from webhooks_service.core import keys


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys", help="issue API keys", description="Manage API keys."
    )
    keysub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keysub.add_parser(
        "create",
        help="issue an API key and print it once",
        description=(
            "Issue an API key for one organisation with the given scopes, or a platform key "
            "(--platform: events:publish for every organisation; with webhooks:read and "
            "webhooks:write it may also open dashboard portal sessions for any organisation). "
            "The key is printed once "
            "on stdout; only its hash is stored."
        ),
    )
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--org", metavar="ORG_ID", help="organisation the key belongs to")
    owner.add_argument(
        "--platform",
        action="store_true",
        help="a platform key: publishes events for every organisation (default scope "
        "events:publish); webhooks scopes let it open portal sessions for any organisation",
    )
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help=f"a scope to grant (repeat for several): {', '.join(keys.SCOPES)}",
    )
    create.add_argument("--name", default="", help="a label to recognise the key by")
    config.add_arguments(create, ["database_url"])
    create.set_defaults(handler=_create)


def _create(args: argparse.Namespace) -> int:
    scopes = [s for arg in args.scope for s in arg.split(",")]
    if args.platform:
        scopes = scopes or [keys.SCOPE_EVENTS_PUBLISH]
    keys.parse_scopes(scopes)  # fail before touching the database
    engine = open_database(config.from_args(args))
    try:
        if args.platform:
            row, raw = keys.create_platform_key(engine, args.name, scopes)
        else:
            row, raw = keys.create_key(engine, args.org, scopes, args.name)
    finally:
        engine.dispose()
    print(raw)
    owner = "platform" if row.organisation_id is None else row.organisation_id
    print(
        f"key {row.id} for {owner} with {' '.join(sorted(row.scopes))}; "
        "store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0

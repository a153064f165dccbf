"""``webhooks keys create | list | revoke``: the API key lifecycle, for operators.

``create`` prints a key once (only a hash is stored; issue a new one if it
is lost), optionally expiring (``--expires-in 90d``). ``list`` shows id,
prefix (the key's first characters), owner, scopes, created, last used,
expires and revoked — never the key. ``revoke`` takes the id, the prefix or
the whole leaked key; every running process refuses it within a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from webhooks_service import config, config_values
from webhooks_service.commands._database import open_database
from webhooks_service.core import keys
from webhooks_service.core.event_body import rfc3339
from webhooks_service.errors import InvalidArgument
from webhooks_service.storage.models import utcnow


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys", help="issue, list and revoke API keys", description="Manage API keys."
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
    create.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="refuse the key after this long, e.g. 90d, 12h, 30m (default: never)",
    )
    config.add_arguments(create, ["database_url"])
    create.set_defaults(handler=_create)

    listing = keysub.add_parser(
        "list",
        help="list API keys (never the keys themselves)",
        description=(
            "List API keys, oldest first: id, prefix (the first characters of the key), "
            "organisation, scopes, created, last used, expires, revoked. Never the key."
        ),
    )
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--org", metavar="ORG_ID", help="only this organisation's keys")
    which.add_argument("--platform", action="store_true", help="only platform keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    config.add_arguments(listing, ["database_url"])
    listing.set_defaults(handler=_list)

    revoke = keysub.add_parser(
        "revoke",
        help="revoke an API key",
        description=(
            "Revoke an API key, given by its id (key_…), its prefix (whk_…_) or the whole key. "
            "Every running process refuses it within a second. Revoking twice is harmless."
        ),
    )
    revoke.add_argument("key", metavar="KEY_ID", help="key_…, or the key's prefix whk_…")
    config.add_arguments(revoke, ["database_url"])
    revoke.set_defaults(handler=_revoke)


def _expires_in(text: str | None) -> timedelta | None:
    if text is None:
        return None
    seconds = config_values.parse_duration(text)  # ConfigurationError names the problem
    if seconds <= 0:
        raise InvalidArgument("--expires-in must be a positive duration (e.g. 90d, 12h, 30m)")
    return timedelta(seconds=seconds)


def _when(value: datetime | None) -> str | None:
    """RFC 3339 UTC (fractions of a second when there are any), or None."""
    return None if value is None else rfc3339(value)


def _record(row: keys.ApiKeyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "prefix": keys.key_prefix(row.id),
        "organisation_id": row.organisation_id,
        "name": row.name,
        "scopes": sorted(row.scopes),
        "created_at": _when(row.created_at),
        "last_used_at": _when(row.last_used_at),
        "expires_at": _when(row.expires_at),
        "revoked_at": _when(row.revoked_at),
    }


def _status(row: keys.ApiKeyRow) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= utcnow():
        return "expired"
    return "active"


def _list(args: argparse.Namespace) -> int:
    engine = open_database(config.from_args(args))
    try:
        rows = keys.list_keys(engine, organisation_id=args.org, platform_only=args.platform)
    finally:
        engine.dispose()
    if args.json:
        for row in rows:
            print(json.dumps({**_record(row), "status": _status(row)}))
        return 0
    columns = (
        "id",
        "prefix",
        "owner",
        "name",
        "scopes",
        "created",
        "last used",
        "expires",
        "revoked",
    )
    table = [columns]
    for row in rows:
        r = _record(row)
        table.append(
            (
                r["id"],
                r["prefix"],
                r["organisation_id"] or "platform",
                r["name"] or "-",
                ",".join(r["scopes"]),
                *(r[k] or "-" for k in ("created_at", "last_used_at", "expires_at", "revoked_at")),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    engine = open_database(config.from_args(args))
    try:
        row = keys.revoke_key(engine, args.key)
    finally:
        engine.dispose()
    print(f"key {row.id} revoked at {_when(row.revoked_at)}", file=sys.stderr)
    return 0


def _create(args: argparse.Namespace) -> int:
    scopes = [s for arg in args.scope for s in arg.split(",")]
    expires_in = _expires_in(args.expires_in)
    if args.platform:
        scopes = scopes or [keys.SCOPE_EVENTS_PUBLISH]
    keys.parse_scopes(scopes)  # fail before touching the database
    engine = open_database(config.from_args(args))
    try:
        if args.platform:
            row, raw = keys.create_platform_key(engine, args.name, scopes, expires_in=expires_in)
        else:
            row, raw = keys.create_key(engine, args.org, scopes, args.name, expires_in=expires_in)
    finally:
        engine.dispose()
    print(raw)
    owner = "platform" if row.organisation_id is None else row.organisation_id
    expiry = "" if row.expires_at is None else f", expires {_when(row.expires_at)}"
    print(
        f"key {row.id} for {owner} with {' '.join(sorted(row.scopes))}{expiry}; "
        "store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0

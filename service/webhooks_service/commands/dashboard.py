"""``webhooks dashboard --org ORG``: print a link that opens the dashboard signed in.

For operators: mints a portal session for the organisation (what
``CreatePortalSession`` does for an API key, here with the operator's access
to the database) and prints its URL once. The link ends at its expiry
(``--ttl``, default WEBHOOKS_PORTAL_SESSION_TTL) or when revoked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service import config, config_values
from webhooks_service.api.portal import link_for
from webhooks_service.commands._database import open_database
from webhooks_service.config import Settings
from webhooks_service.core import portal
from webhooks_service.storage.models import utcnow

OPERATOR = portal.OPERATOR  # created_by of sessions the CLI mints


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard",
        help="print a link that opens the dashboard signed in for an organisation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--org", required=True, metavar="ORG_ID", help="the organisation")
    parser.add_argument(
        "--read-only", action="store_true", help="only webhooks:read (look, change nothing)"
    )
    parser.add_argument(
        "--ttl",
        default=None,
        metavar="DURATION",
        help="lifetime, e.g. 30m or 8h (1m to 24h) [default: WEBHOOKS_PORTAL_SESSION_TTL, 1h]",
    )
    config.add_arguments(parser, ["database_url", "gateway_listen", "dashboard_url"])
    parser.set_defaults(handler=_run)


def mint_link(
    engine: Engine,
    settings: Settings,
    org_id: str,
    *,
    origin: str = "",
    read_only: bool = False,
    ttl_seconds: float | None = None,
) -> tuple[str, portal.PortalSessionRow]:
    """(dashboard URL, session) for ``org_id``, minted by the operator."""
    scopes = portal.PORTAL_SCOPES[:1] if read_only else portal.PORTAL_SCOPES
    made = portal.create_session(
        engine,
        portal.Caller(OPERATOR, None, frozenset(scopes)),
        organisation_id=org_id,
        ttl_seconds=int(ttl_seconds or 0),
        default_ttl_seconds=settings.portal_session_ttl,
        now=utcnow(),
    )
    return link_for(settings, made, origin), made.row


def _run(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    ttl = config_values.parse_portal_ttl(args.ttl) if args.ttl else None
    engine = open_database(settings)
    try:
        url, row = mint_link(engine, settings, args.org, read_only=args.read_only, ttl_seconds=ttl)
    finally:
        engine.dispose()
    print(url)
    print(
        f"portal session {row.id} for {row.organisation_id} ({' '.join(sorted(row.scopes))}), "
        f"until {row.expires_at:%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    return 0

"""``webhooks secrets reseal``: store every webhook secret sealed with the current key.

Run it once after setting ``WEBHOOKS_SECRET_KEY`` on a database that already
holds plaintext secrets, and after prepending a new key to the list (key
rotation) so that the old key can then be removed. See
core/secrets_at_rest.py and docs/decisions.md ("Secrets at rest").
"""

from __future__ import annotations

import argparse
from typing import Any

from webhooks_service import config
from webhooks_service.commands._database import open_service_database
from webhooks_service.core import secrets_at_rest


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "secrets",
        help="manage webhook secrets at rest",
        description="Manage how webhook signing secrets are stored.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    reseal = actions.add_parser(
        "reseal",
        help="encrypt every stored webhook secret with the first WEBHOOKS_SECRET_KEY",
        description=(
            "Re-store every webhook secret (and previous secret) encrypted with the first "
            "key of WEBHOOKS_SECRET_KEY: encrypts plaintext rows, and moves rows sealed "
            "with an older key (still listed) to the first. Safe while the service runs."
        ),
    )
    config.add_arguments(reseal, ["database_url", "secret_key"])
    reseal.set_defaults(handler=_reseal)


def _reseal(args: argparse.Namespace) -> int:
    settings = config.from_args(args)
    settings, engine = open_service_database(settings)
    try:
        count = secrets_at_rest.reseal_all(engine, settings.secret_key)
    finally:
        engine.dispose()
    print(f"sealed the secrets of {count} webhook configuration(s)")
    return 0

"""Opening the database for a command, with one-line errors instead of tracebacks."""

from __future__ import annotations

import sqlalchemy.exc
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import secrets_at_rest
from webhooks_service.errors import ConfigurationError
from webhooks_service.storage import db


def open_database(settings: Settings, *, migrate: bool = True) -> Engine:
    """An engine for ``settings.database_url``, migrated to the current schema.

    Commands migrate on start (idempotent and quick when up to date) so that
    ``webhooks orgs create`` works on a fresh database before the first
    ``serve``. Connection failures become a ConfigurationError naming the
    database (password hidden).
    """
    engine = db.create_engine(settings.database_url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if migrate:
            db.upgrade(engine)
        else:
            with engine.connect():
                pass
    except sqlalchemy.exc.DBAPIError as exc:
        engine.dispose()
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigurationError(f"cannot use the database at {shown}: {first}") from exc
    return engine


def open_service_database(settings: Settings) -> tuple[Settings, Engine]:
    """:func:`open_database`, and ``settings`` with the key webhook secrets are
    sealed with (an embedded install's key file, generated on first use; see
    core/secrets_at_rest.py ``resolve_key``)."""
    engine = open_database(settings)
    try:
        return secrets_at_rest.resolve_key(settings, engine), engine
    except BaseException:
        engine.dispose()
        raise

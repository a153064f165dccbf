"""Opening the database for a command, with one-line errors instead of tracebacks.

Only the commands that run the service (``serve``, ``worker``, ``run``) and
``db upgrade`` create a database and its schema (``create=True``). The
operator's other commands (``orgs``, ``keys``, ``secrets``, ``prune``) open an
existing one: run from the wrong directory, or with a mistyped URL, they say
so in one line naming the URL and how to create it, instead of quietly
making a fresh empty database whose keys the running service never sees.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import secrets_at_rest
from webhooks_service.errors import ConfigurationError, DatabaseError
from webhooks_service.storage import db
from webhooks_service.storage.db import shown_url

CREATE_HINT = "create it with `webhooks db upgrade` (or start `webhooks serve`)"


def open_database(settings: Settings, *, create: bool = False) -> Engine:
    """An engine for ``settings.database_url``, migrated to the current schema.

    ``create``: make the database (a SQLite file) and its schema when missing.
    Without it, a missing database or one without the webhooks schema is a
    ConfigurationError naming the URL and how to create it; an existing one
    is brought up to date as usual. Connection failures become a
    ConfigurationError naming the database (password hidden).
    """
    url = settings.database_url
    shown = shown_url(url)
    sqlite_file = db.sqlite_file(url)
    if not create and sqlite_file is not None and not sqlite_file.is_file():
        raise ConfigurationError(
            f"no database at {shown}: {CREATE_HINT}, or set WEBHOOKS_DATABASE_URL "
            "(--database-url) to the one the service uses"
        )
    engine = db.create_engine(url)
    try:
        if not create and not db.has_schema(engine):
            raise ConfigurationError(
                f"the database at {shown} has no webhooks schema: {CREATE_HINT}"
            )
        db.upgrade(engine)
    except DatabaseError as exc:
        engine.dispose()
        first = exc.detail
        hint = (
            " (create the database, e.g. with createdb, then its schema with `webhooks db upgrade`)"
            if "does not exist" in first
            else ""
        )
        raise ConfigurationError(f"cannot use the database at {shown}: {first}{hint}") from exc
    except ConfigurationError:
        engine.dispose()
        raise
    return engine


def open_service_database(settings: Settings, *, create: bool = False) -> tuple[Settings, Engine]:
    """:func:`open_database`, and ``settings`` with the key webhook secrets are
    sealed with (an embedded install's key file, generated on first use; see
    core/secrets_at_rest.py ``resolve_key``)."""
    engine = open_database(settings, create=create)
    try:
        return secrets_at_rest.resolve_key(settings, engine), engine
    except BaseException:
        engine.dispose()
        raise

"""Opening the database for a command, with one-line errors instead of tracebacks.

Only the commands that run the service (``serve``, ``worker``, ``run``) and
``db upgrade`` create a database and its schema (``create=True``). The
operator's other commands (``orgs``, ``keys``, ``secrets``, ``prune``) open an
existing one: run from the wrong directory, or with a mistyped URL, they say
so in one line naming the URL and how to create it, instead of quietly
making a fresh empty database whose keys the running service never sees.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Engine, make_url

from webhooks_service.config import Settings
from webhooks_service.errors import ConfigurationError
from webhooks_service.storage import db

CREATE_HINT = "create it with `webhooks db upgrade` (or start `webhooks serve`)"


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # db.create_engine reports it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def shown_url(url: str) -> str:
    """The URL as the operator should read it: SQLite paths absolute, password hidden."""
    path = _sqlite_file(url)
    if path is not None:
        return f"sqlite:///{path}"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


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
    sqlite_file = _sqlite_file(url)
    if not create and sqlite_file is not None and not sqlite_file.is_file():
        raise ConfigurationError(
            f"no database at {shown}: {CREATE_HINT}, or set WEBHOOKS_DATABASE_URL "
            "(--database-url) to the one the service uses"
        )
    engine = db.create_engine(url)
    try:
        if not create:
            with engine.connect() as conn:
                has_schema = sa.inspect(conn).has_table("alembic_version")
            if not has_schema:
                raise ConfigurationError(
                    f"the database at {shown} has no webhooks schema: {CREATE_HINT}"
                )
        db.upgrade(engine)
    except sqlalchemy.exc.DBAPIError as exc:
        engine.dispose()
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
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

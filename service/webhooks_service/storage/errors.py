"""The storage edge: the driver's exceptions become the service's own.

Every transaction storage opens (``db.write_transaction``,
``db.read_transaction``, ``db.connection``) runs inside :func:`mapped`, so a
SQLAlchemy or driver exception never leaves this package: callers above see
``webhooks_service.errors`` classes only (tests/test_architecture.py checks
that nothing above storage names SQLAlchemy's exceptions), the way
procrastinate maps driver errors to its own at its connector.

- deadlock (40P01), serialization failure (40001), lock not available
  (55P03), SQLite busy or locked -> ``TransactionConflict``: run the
  transaction again;
- connection refused or lost, pool timeout, the server shutting down, any
  other ``OperationalError`` / ``InterfaceError`` -> ``DatabaseUnavailable``:
  retry later (gRPC UNAVAILABLE);
- unique violation (23505, SQLite UNIQUE / PRIMARY KEY) -> ``DuplicateKey``
  (a ``Conflict``): read again and retry (gRPC ABORTED);
- foreign-key violation (23503, SQLite FOREIGN KEY) -> ``MissingReference``
  (a ``NotFound``): it is gone;
- anything else (a bug, a schema mismatch; SQLite's generic ``SQLITE_ERROR``
  too, which it reports as operational) -> ``DatabaseError``: INTERNAL,
  logged with its incident id.

Messages are the service's and name no value; the driver's first line is in
``detail`` for the log (SQL parameters are never in it: ``hide_parameters``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from webhooks_service.errors import (
    DatabaseError,
    DatabaseUnavailable,
    DuplicateKey,
    MissingReference,
    TransactionConflict,
)

__all__ = ["mapped", "translate"]

_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
UNAVAILABLE_MESSAGE = "the database is unavailable; retry later"
CONFLICT_MESSAGE = "the database was busy with a conflicting change; retry"


def _detail(exc: sa.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def translate(exc: sa.exc.SQLAlchemyError) -> DatabaseError:
    """The service's error for a SQLAlchemy (or wrapped driver) exception."""
    orig = getattr(exc, "orig", None)
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    sqlite_name = str(getattr(orig, "sqlite_errorname", "") or "")
    detail = _detail(exc)
    if sqlstate in _RETRY_SQLSTATES or sqlite_name.startswith(_SQLITE_BUSY):
        return TransactionConflict(CONFLICT_MESSAGE, detail)
    if isinstance(exc, sa.exc.IntegrityError):
        if sqlstate == "23505" or sqlite_name.startswith(
            ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
        ):
            return DuplicateKey("a concurrent change stored the same key; retry", detail)
        if sqlstate == "23503" or sqlite_name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            return MissingReference("what the request refers to no longer exists", detail)
        return DatabaseError("the database refused a write", detail)
    if sqlite_name == "SQLITE_ERROR":  # SQLite's "SQL error" (no such table, …) is operational
        return DatabaseError("the database failed a statement", detail)
    if (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated) or isinstance(
        exc,
        sa.exc.OperationalError
        | sa.exc.InterfaceError
        | sa.exc.TimeoutError
        | sa.exc.DisconnectionError,
    ):
        return DatabaseUnavailable(UNAVAILABLE_MESSAGE, detail)
    return DatabaseError("the database failed a statement", detail)


@contextmanager
def mapped() -> Iterator[None]:
    """Run the block with SQLAlchemy's exceptions raised as the service's own."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc) from exc

"""What differs between SQLite and PostgreSQL in a statement, written once.

- :func:`insert`: the dialect's INSERT, the one with ``on_conflict_do_nothing``
  and ``on_conflict_do_update`` (both dialects have them, as different classes).
- :func:`locked_in_key_order`: rows read for update in key order, so that
  concurrent transactions taking several of them serialise without
  deadlocks (``FOR UPDATE`` on PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert", "locked_in_key_order"]


def insert(conn: sa.Connection, table: sa.Table) -> Any:
    """``INSERT INTO table`` in the connection's dialect (with its ON CONFLICT clauses)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def locked_in_key_order(
    conn: sa.Connection, table: sa.Table, key: sa.Column[Any], keys: Sequence[Any]
) -> sa.CursorResult[Any]:
    """The rows of ``keys`` (those that exist), locked in key order on PostgreSQL."""
    query = sa.select(table).where(key.in_(keys)).order_by(key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query)

"""Queries on ``service_keys``: read a named key, creating it the first time."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa

from webhooks_service.storage import dialect
from webhooks_service.storage.models import ServiceKey, utcnow

_T = cast(sa.Table, ServiceKey.__table__)


def get_or_create(conn: sa.Connection, name: str, candidate: str) -> str:
    """The stored value of key ``name``; stores ``candidate`` if there is none.

    Several processes starting at once all get the one value that won the
    insert (``ON CONFLICT DO NOTHING``, then a read).
    """
    values = {"name": name, "value": candidate, "created_at": utcnow()}
    conn.execute(dialect.insert(conn, _T).values(**values).on_conflict_do_nothing())
    return str(conn.execute(sa.select(_T.c.value).where(_T.c.name == name)).scalar_one())

"""Queries on ``rate_buckets``: token buckets shared by every process.

One :func:`take` is one short write transaction on the bucket's row (``SELECT
… FOR UPDATE`` on PostgreSQL; SQLite's one writer at a time does the same):
refill by the time since the last take, then hand out up to ``want`` tokens
(none unless ``at_least`` are there). The arithmetic is the token bucket's,
on the caller's clock (seconds since the epoch; the processes of one
deployment share a clock to well under a token's period).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage import dialect
from webhooks_service.storage.models import RateBucket

_T = cast(sa.Table, RateBucket.__table__)

__all__ = ["Take", "give", "prune", "take"]


@dataclass(frozen=True)
class Take:
    granted: int
    tokens: float  # what the bucket holds after the take
    wait: float  # seconds until the next token (0 when one is there)


def _refilled(
    tokens: float, updated_at: float, *, now: float, rate: float, capacity: float
) -> float:
    return min(capacity, tokens + max(0.0, now - updated_at) * rate)


def _no_flush_wait(conn: sa.Connection) -> None:
    """A counter need not survive a crash: on PostgreSQL this transaction's commit
    does not wait for its WAL flush (a crash may forget the last few takes, which
    only ever gives a caller a few tokens back)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _locked(conn: sa.Connection, name: str, capacity: float, now: float) -> tuple[float, float]:
    """The bucket's (tokens, updated_at), its row locked until the commit; a new
    bucket starts full."""
    query = sa.select(_T.c.tokens, _T.c.updated_at).where(_T.c.name == name).with_for_update()
    row = conn.execute(query).first()
    if row is not None:
        return float(row.tokens), float(row.updated_at)
    conn.execute(
        dialect.insert(conn, _T)
        .values(name=name, tokens=capacity, updated_at=now, full_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = conn.execute(query).one()
    return float(row.tokens), float(row.updated_at)


def _store(
    conn: sa.Connection, name: str, tokens: float, *, now: float, rate: float, capacity: float
) -> None:
    full_at = now + (capacity - tokens) / rate if rate > 0 else now + 86400.0
    conn.execute(
        sa.update(_T)
        .where(_T.c.name == name)
        .values(tokens=tokens, updated_at=now, full_at=full_at)
    )


def take(
    conn: sa.Connection,
    name: str,
    *,
    want: int,
    rate: float,
    capacity: float,
    now: float,
    at_least: int = 1,
) -> Take:
    """Up to ``want`` whole tokens from the bucket (0 unless ``at_least`` are there)."""
    _no_flush_wait(conn)
    tokens, updated_at = _locked(conn, name, capacity, now)
    tokens = _refilled(tokens, updated_at, now=now, rate=rate, capacity=capacity)
    whole = int(tokens)
    granted = min(want, whole) if whole >= max(1, at_least) else 0
    tokens -= granted
    _store(conn, name, tokens, now=now, rate=rate, capacity=capacity)
    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate if rate > 0 else float("inf")
    return Take(granted, tokens, wait)


def give(
    conn: sa.Connection, name: str, amount: float, *, rate: float, capacity: float, now: float
) -> None:
    """Put ``amount`` unused tokens back (never above ``capacity``)."""
    _no_flush_wait(conn)
    tokens, updated_at = _locked(conn, name, capacity, now)
    tokens = _refilled(tokens, updated_at, now=now, rate=rate, capacity=capacity)
    _store(conn, name, min(capacity, tokens + amount), now=now, rate=rate, capacity=capacity)


def prune(conn: sa.Connection, now: float, limit: int = 10_000) -> int:
    """Delete up to ``limit`` buckets that are full again (as good as absent)."""
    names = sa.select(_T.c.name).where(_T.c.full_at < now).limit(limit).scalar_subquery()
    result = conn.execute(sa.delete(_T).where(_T.c.name.in_(names)))
    return int(result.rowcount or 0)

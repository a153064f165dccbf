"""Queries on ``api_keys``. Only the hash of a key's secret part is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.storage.models import ApiKey

_T = cast(sa.Table, ApiKey.__table__)


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    organisation_id: str | None
    name: str
    secret_hash: str = field(repr=False)
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


def _row(row: Any) -> ApiKeyRow:
    return ApiKeyRow(
        id=row.id,
        organisation_id=row.organisation_id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes.split()),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def insert(
    conn: sa.Connection,
    *,
    key_id: str,
    organisation_id: str | None,
    name: str,
    secret_hash: str,
    scopes: frozenset[str],
    created_at: datetime,
    expires_at: datetime | None = None,
) -> ApiKeyRow:
    conn.execute(
        sa.insert(_T).values(
            id=key_id,
            organisation_id=organisation_id,
            name=name,
            secret_hash=secret_hash,
            scopes=" ".join(sorted(scopes)),
            created_at=created_at,
            revoked_at=None,
            expires_at=expires_at,
        )
    )
    return ApiKeyRow(
        key_id, organisation_id, name, secret_hash, scopes, created_at, None, expires_at
    )


def get(conn: sa.Connection, key_id: str) -> ApiKeyRow | None:
    row = conn.execute(sa.select(_T).where(_T.c.id == key_id)).first()
    return None if row is None else _row(row)


def list_keys(
    conn: sa.Connection, *, organisation_id: str | None = None, platform_only: bool = False
) -> list[ApiKeyRow]:
    """Keys oldest first: all, one organisation's, or the platform keys."""
    query = sa.select(_T).order_by(_T.c.created_at, _T.c.id)
    if platform_only:
        query = query.where(_T.c.organisation_id.is_(None))
    elif organisation_id is not None:
        query = query.where(_T.c.organisation_id == organisation_id)
    return [_row(r) for r in conn.execute(query)]


def revoke(conn: sa.Connection, key_id: str, *, now: datetime) -> bool:
    """Set ``revoked_at`` (once; a second revoke keeps the first time). False: no such key."""
    found = conn.execute(sa.select(_T.c.revoked_at).where(_T.c.id == key_id)).first()
    if found is None:
        return False
    if found.revoked_at is None:
        conn.execute(sa.update(_T).where(_T.c.id == key_id).values(revoked_at=now))
    return True


def touch(conn: sa.Connection, key_id: str, *, now: datetime, stale_before: datetime) -> None:
    """Record a use, unless one after ``stale_before`` is already recorded."""
    conn.execute(
        sa.update(_T)
        .where(
            _T.c.id == key_id,
            sa.or_(_T.c.last_used_at.is_(None), _T.c.last_used_at < stale_before),
        )
        .values(last_used_at=now)
    )

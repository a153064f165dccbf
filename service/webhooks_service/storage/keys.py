"""Queries on ``api_keys``. Only the hash of a key's secret part is stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage.models import ApiKey

_T = cast(sa.Table, ApiKey.__table__)


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    organisation_id: str | None
    name: str
    secret_hash: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


def insert(
    conn: sa.Connection,
    *,
    key_id: str,
    organisation_id: str | None,
    name: str,
    secret_hash: str,
    scopes: frozenset[str],
    created_at: datetime,
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
        )
    )
    return ApiKeyRow(key_id, organisation_id, name, secret_hash, scopes, created_at, None)


def get(conn: sa.Connection, key_id: str) -> ApiKeyRow | None:
    row = conn.execute(sa.select(_T).where(_T.c.id == key_id)).first()
    if row is None:
        return None
    return ApiKeyRow(
        id=row.id,
        organisation_id=row.organisation_id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes.split()),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )

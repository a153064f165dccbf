"""Queries on ``portal_sessions``. Only the hash of a token's secret part is stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage.models import PortalSession

_T = cast(sa.Table, PortalSession.__table__)

# Ended sessions are kept this long after they end (for an admin asking "why
# was I signed out?"), then deleted when the organisation mints another.
KEEP_ENDED_SECONDS = 7 * 86400


@dataclass(frozen=True)
class PortalSessionRow:
    id: str
    organisation_id: str
    secret_hash: str
    scopes: frozenset[str]
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def insert(conn: sa.Connection, row: PortalSessionRow) -> None:
    conn.execute(
        sa.insert(_T).values(
            id=row.id,
            organisation_id=row.organisation_id,
            secret_hash=row.secret_hash,
            scopes=" ".join(sorted(row.scopes)),
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )
    )


def get(conn: sa.Connection, session_id: str) -> PortalSessionRow | None:
    row = conn.execute(sa.select(_T).where(_T.c.id == session_id)).first()
    if row is None:
        return None
    return PortalSessionRow(
        id=row.id,
        organisation_id=row.organisation_id,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes.split()),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def revoke(conn: sa.Connection, session_id: str, organisation_id: str, now: datetime) -> bool:
    """End a live session of ``organisation_id``; False if none was live."""
    result = conn.execute(
        sa.update(_T)
        .where(
            _T.c.id == session_id,
            _T.c.organisation_id == organisation_id,
            _T.c.revoked_at.is_(None),
            _T.c.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return bool(result.rowcount)


def delete_ended(conn: sa.Connection, organisation_id: str, before: datetime) -> int:
    """Delete the organisation's sessions that expired before ``before``."""
    result = conn.execute(
        sa.delete(_T).where(_T.c.organisation_id == organisation_id, _T.c.expires_at < before)
    )
    return int(result.rowcount or 0)

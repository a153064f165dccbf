"""Queries on ``organisations``: create, get, list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage.models import Organisation

_T = cast(sa.Table, Organisation.__table__)


@dataclass(frozen=True)
class OrganisationRow:
    id: str
    name: str
    created_at: datetime


def insert(conn: sa.Connection, org_id: str, name: str, created_at: datetime) -> OrganisationRow:
    conn.execute(sa.insert(_T).values(id=org_id, name=name, created_at=created_at))
    return OrganisationRow(org_id, name, created_at)


def get(conn: sa.Connection, org_id: str) -> OrganisationRow | None:
    row = conn.execute(
        sa.select(_T.c.id, _T.c.name, _T.c.created_at).where(_T.c.id == org_id)
    ).first()
    return None if row is None else OrganisationRow(row.id, row.name, row.created_at)


def list_all(conn: sa.Connection) -> list[OrganisationRow]:
    rows = conn.execute(
        sa.select(_T.c.id, _T.c.name, _T.c.created_at).order_by(_T.c.created_at, _T.c.id)
    )
    return [OrganisationRow(r.id, r.name, r.created_at) for r in rows]


def set_require_verification(conn: sa.Connection, org_id: str, required: bool) -> bool:
    """Require (or not) endpoint ownership verification; False if no such organisation."""
    changed = conn.execute(
        sa.update(_T).where(_T.c.id == org_id).values(require_endpoint_verification=required)
    ).rowcount
    return bool(changed)

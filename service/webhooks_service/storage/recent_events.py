"""An organisation's most recent events of some types (the filter dry run).

One range scan of ``ix_events_org_type_pk`` (organisation, type, pk) per
type, newest first and at most ``limit`` keys each, merged here; then the
bodies of the newest ``limit`` only. The cost is bounded by ``limit`` times
the number of types, whatever the size of the table or of other
organisations' traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage.models import Event

_E = cast(sa.Table, Event.__table__)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as a payload filter sees it (the dry run; retry and replay, storage/replay.py)."""

    id: int  # the event's pk here; the delivery's id for retry and replay
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: str  # the delivered body


def recent_events(
    conn: sa.Connection,
    organisation_id: str,
    event_types: Sequence[str],
    *,
    since: datetime,
    limit: int,
) -> list[StoredEvent]:
    """The newest ``limit`` events of the types published since ``since``, newest first."""
    pks: list[int] = []
    for event_type in event_types:
        query = (
            sa.select(_E.c.pk)
            .where(
                _E.c.organisation_id == organisation_id,
                _E.c.event_type == event_type,
                _E.c.created_at >= since,
            )
            .order_by(_E.c.pk.desc())
            .limit(limit)
        )
        pks.extend(conn.execute(query).scalars())
    newest = sorted(pks, reverse=True)[:limit]
    if not newest:
        return []
    rows = conn.execute(
        sa.select(_E.c.pk, _E.c.event_id, _E.c.event_type, _E.c.occurred_at, _E.c.payload)
        .where(_E.c.pk.in_(newest))
        .order_by(_E.c.pk.desc())
    )
    return [StoredEvent(r.pk, r.event_id, r.event_type, r.occurred_at, r.payload) for r in rows]

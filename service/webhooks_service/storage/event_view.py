"""GetEvent's reads: one event of an organisation, its deliveries and their latest attempts.

Three queries in one read transaction, each bounded: the event by its
``(organisation_id, event_id)`` unique key; its deliveries by
``ix_deliveries_event_pk`` (one per endpoint the event went to: at most the
configuration quota), joined to their configuration for the URL, deleted or
not; and at most ``per_delivery`` newest attempts of each, through
``ix_attempts_org_event`` (``storage/logs.event_attempts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage import logs
from webhooks_service.storage.delivery_state import DeliveryState, select_state, state_of
from webhooks_service.storage.models import Delivery, Event, WebhookConfig

_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_C = cast(sa.Table, WebhookConfig.__table__)


@dataclass(frozen=True)
class EventDelivery:
    state: DeliveryState
    url: str
    endpoint_deleted: bool
    attempts: list[logs.LogRow]


@dataclass(frozen=True)
class EventView:
    event_id: str
    event_type: str
    occurred_at: datetime
    created_at: datetime
    payload: str
    deliveries: list[EventDelivery]


def get_event(
    conn: sa.Connection, organisation_id: str, event_id: str, *, per_delivery: int
) -> EventView | None:
    """The organisation's event ``event_id`` with its deliveries; None if it has none."""
    event = conn.execute(
        sa.select(_E.c.pk, _E.c.event_type, _E.c.occurred_at, _E.c.created_at, _E.c.payload).where(
            _E.c.organisation_id == organisation_id, _E.c.event_id == event_id
        )
    ).first()
    if event is None:
        return None
    rows = conn.execute(
        select_state()
        .add_columns(_C.c.url, _C.c.deleted_at)
        .where(_D.c.event_pk == event.pk, _D.c.organisation_id == organisation_id)
        .order_by(_D.c.id)
    ).all()
    attempts: dict[int, list[logs.LogRow]] = {}
    for a in logs.event_attempts(conn, organisation_id, event_id, per_delivery=per_delivery):
        attempts.setdefault(a.delivery_id, []).append(a)
    return EventView(
        event_id=event_id,
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        created_at=event.created_at,
        payload=event.payload,
        deliveries=[
            EventDelivery(state_of(r), r.url, r.deleted_at is not None, attempts.get(r.id, []))
            for r in rows
        ],
    )

"""Storing operational events (``webhook.*``) inside another write transaction.

The service's own events are born inside transactions that already run: the
one that records a batch of attempts (``queue.finish_batch``, which calls its
``after_write`` hook with its connection), the endpoint-health sweep's, and
the admin's Put that disables an endpoint. So, unlike ``insert_events``,
:func:`insert_operational` takes a connection, and the event is committed
atomically with the change it reports (no event about an attempt that was
rolled back, none lost between the two).

Fan-out: the organisation's enabled, live configurations whose patterns
match (``matches``, the catalog's rule), except the configuration the event
is about. Deliveries are pending and due now; on PostgreSQL a NOTIFY with a
payload of its own wakes every worker, this process's included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.domain import PARKED_UNTIL, VerificationStatus
from webhooks_service.storage.endpoint_health import CONFIGS_WITH_HEALTH
from webhooks_service.storage.events import NOTIFY_CHANNEL
from webhooks_service.storage.models import Delivery, Event, WebhookConfig
from webhooks_service.storage.models import EndpointHealth as HealthRow

__all__ = [
    "OperationalEvent",
    "Subject",
    "final_deliveries",
    "insert_operational",
    "subjects",
]

_C = cast(sa.Table, WebhookConfig.__table__)
_H = cast(sa.Table, HealthRow.__table__)
_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)

# Not this process's PROCESS_TOKEN: its own listener wakes for these too.
NOTIFY_PAYLOAD = "operational"

Matcher = Callable[[list[str], str], bool]


@dataclass(frozen=True, slots=True)
class OperationalEvent:
    organisation_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: str  # the exact JSON body
    about_config_id: str  # never delivered to this configuration


@dataclass(frozen=True, slots=True)
class Subject:
    """The configuration an event is about, as it is now."""

    id: str
    organisation_id: str
    url: str
    failing_since: datetime | None


def subjects(conn: sa.Connection, config_ids: Iterable[str]) -> dict[str, Subject]:
    ids = sorted(set(config_ids))
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(_C.c.id, _C.c.organisation_id, _C.c.url, _H.c.failing_since)
        .select_from(CONFIGS_WITH_HEALTH)
        .where(_C.c.id.in_(ids))
    )
    return {r.id: Subject(r.id, r.organisation_id, r.url, r.failing_since) for r in rows}


def final_deliveries(conn: sa.Connection, expected: dict[int, tuple[str, int]]) -> set[int]:
    """Which of ``{delivery id: (status, attempts)}`` are in that state now.

    ``finish_batch`` drops attempts whose lease was lost; this tells the hook
    which final outcomes were really recorded.
    """
    if not expected:
        return set()
    rows = conn.execute(
        sa.select(_D.c.id, _D.c.status, _D.c.attempts).where(_D.c.id.in_(sorted(expected)))
    )
    return {r.id for r in rows if expected.get(r.id) == (r.status, r.attempts)}


def insert_operational(
    conn: sa.Connection,
    new_events: Sequence[OperationalEvent],
    *,
    now: datetime,
    matches: Matcher,
) -> int:
    """Store the events and their deliveries; the number of deliveries created.

    An event no configuration subscribes to is not stored at all.
    """
    if not new_events:
        return 0
    orgs = sorted({e.organisation_id for e in new_events})
    targets: dict[str, list[tuple[str, list[str]]]] = {}
    waiting: set[str] = set()  # pending ownership verification: their deliveries wait
    for r in conn.execute(
        sa.select(_C.c.id, _C.c.organisation_id, _C.c.event_types, _C.c.verification_status)
        .where(
            _C.c.organisation_id.in_(orgs),
            _C.c.enabled.is_(True),
            _C.c.deleted_at.is_(None),
        )
        .order_by(_C.c.created_at, _C.c.id)
    ):
        targets.setdefault(r.organisation_id, []).append((r.id, list(r.event_types)))
        if r.verification_status == VerificationStatus.PENDING:
            waiting.add(r.id)
    created = 0
    for e in new_events:
        to = [
            config_id
            for config_id, patterns in targets.get(e.organisation_id, ())
            if config_id != e.about_config_id and matches(patterns, e.event_type)
        ]
        if not to:
            continue
        event_pk = conn.execute(
            sa.insert(_E)
            .values(
                organisation_id=e.organisation_id,
                event_id=e.event_id,
                event_type=e.event_type,
                occurred_at=e.occurred_at,
                payload=e.payload,
                created_at=now,
            )
            .returning(_E.c.pk)
        ).scalar_one()
        rows: list[dict[str, Any]] = [
            {
                "organisation_id": e.organisation_id,
                "event_pk": event_pk,
                "config_id": config_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": PARKED_UNTIL if config_id in waiting else now,
                "claim_token": None,
                "created_at": now,
                "updated_at": now,
            }
            for config_id in to
        ]
        conn.execute(sa.insert(_D), rows)
        created += len(rows)
    if created and conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": NOTIFY_PAYLOAD},
        )
    return created

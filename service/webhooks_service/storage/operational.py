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

Bounds (issue 26.1; the rule is core/operational.py's): an organisation's
operational deliveries per window are at most its live configurations,
enabled or not (N; at least ``MIN_BUDGET``) (``operational_budgets``); an
event whose fan-out does not fit is not stored (``suppressed_total``). An
endpoint's failures are coalesced into reports before they get here
(storage/operational_failures.py).

The budget rows are locked in key order (``dialect.locked_in_key_order``),
after everything else the calling transaction writes, so concurrent batches
of several processes serialise on them without deadlocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.domain import PARKED_UNTIL, DeliveryStatus, VerificationStatus
from webhooks_service.storage import dialect
from webhooks_service.storage.endpoint_health import CONFIGS_WITH_HEALTH
from webhooks_service.storage.events import NOTIFY_CHANNEL
from webhooks_service.storage.models import (
    Delivery,
    Event,
    OperationalBudget,
    WebhookConfig,
)
from webhooks_service.storage.models import EndpointHealth as HealthRow

__all__ = [
    "OperationalEvent",
    "Stored",
    "Subject",
    "final_deliveries",
    "insert_operational",
    "operational_totals",
    "subjects",
]

_C = cast(sa.Table, WebhookConfig.__table__)
_H = cast(sa.Table, HealthRow.__table__)
_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_B = cast(sa.Table, OperationalBudget.__table__)
# An organisation's operational deliveries per window: its live configurations
# (N), and at least this many (so that a small organisation hears of a disabling).
MIN_BUDGET = 10

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


@dataclass(frozen=True, slots=True)
class Stored:
    """What :func:`insert_operational` did: deliveries created, events stored
    (with at least one delivery) and events left out over the budget."""

    created: int = 0
    sent: int = 0
    suppressed: int = 0


def operational_totals(conn: sa.Connection, organisation_id: str) -> dict[str, int]:
    """An organisation's running totals: sent, coalesced, suppressed (0 if none)."""
    row = conn.execute(
        sa.select(_B.c.sent_total, _B.c.coalesced_total, _B.c.suppressed_total).where(
            _B.c.organisation_id == organisation_id
        )
    ).first()
    if row is None:
        return {"sent": 0, "coalesced": 0, "suppressed": 0}
    return {"sent": row[0], "coalesced": row[1], "suppressed": row[2]}


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
    window: float,
    coalesced: Mapping[str, int] | None = None,
) -> Stored:
    """Store the events and their deliveries, within each organisation's budget.

    An event no configuration subscribes to is not stored at all; one whose
    deliveries would take the organisation's operational deliveries in this
    ``window`` past its live configurations (at least ``MIN_BUDGET``) is not
    stored either (suppressed).
    ``coalesced``: failures per organisation folded into reports, for its totals.
    """
    coalesced = dict(coalesced or {})
    orgs = sorted({e.organisation_id for e in new_events} | set(coalesced))
    if not orgs:
        return Stored()
    targets: dict[str, list[tuple[str, list[str]]]] = {}
    endpoints: dict[str, int] = {}  # live configurations, enabled or not: N
    waiting: set[str] = set()  # pending ownership verification: their deliveries wait
    for r in conn.execute(
        sa.select(
            _C.c.id,
            _C.c.organisation_id,
            _C.c.event_types,
            _C.c.enabled,
            _C.c.verification_status,
        )
        .where(_C.c.organisation_id.in_(orgs), _C.c.deleted_at.is_(None))
        .order_by(_C.c.created_at, _C.c.id)
    ):
        endpoints[r.organisation_id] = endpoints.get(r.organisation_id, 0) + 1
        if r.enabled:
            targets.setdefault(r.organisation_id, []).append((r.id, list(r.event_types)))
            if r.verification_status == VerificationStatus.PENDING:
                waiting.add(r.id)
    conn.execute(
        dialect.insert(conn, _B)
        .values([{"organisation_id": o, "window_started_at": now, "deliveries": 0} for o in orgs])
        .on_conflict_do_nothing(index_elements=["organisation_id"])
    )
    budgets = {
        r.organisation_id: r
        for r in dialect.locked_in_key_order(conn, _B, _B.c.organisation_id, orgs)
    }
    window_start = now - timedelta(seconds=window)
    used: dict[str, int] = {}
    started: dict[str, datetime] = {}
    for org, row in budgets.items():
        fresh = row.window_started_at <= window_start
        used[org] = 0 if fresh else row.deliveries
        started[org] = now if fresh else row.window_started_at
    sent: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    created = 0
    for e in new_events:
        org = e.organisation_id
        to = [
            config_id
            for config_id, patterns in targets.get(org, ())
            if config_id != e.about_config_id and matches(patterns, e.event_type)
        ]
        if not to:
            continue
        if used.get(org, 0) + len(to) > max(endpoints.get(org, 0), MIN_BUDGET):
            suppressed[org] = suppressed.get(org, 0) + 1
            continue
        used[org] = used.get(org, 0) + len(to)
        sent[org] = sent.get(org, 0) + 1
        event_pk = conn.execute(
            sa.insert(_E)
            .values(
                organisation_id=org,
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
                "organisation_id": org,
                "event_pk": event_pk,
                "config_id": config_id,
                "status": DeliveryStatus.PENDING,
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
    for org in budgets:
        conn.execute(
            sa.update(_B)
            .where(_B.c.organisation_id == org)
            .values(
                window_started_at=started[org],
                deliveries=used[org],
                sent_total=_B.c.sent_total + sent.get(org, 0),
                coalesced_total=_B.c.coalesced_total + coalesced.get(org, 0),
                suppressed_total=_B.c.suppressed_total + suppressed.get(org, 0),
            )
        )
    if created and conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": NOTIFY_PAYLOAD},
        )
    return Stored(created, sum(sent.values()), sum(suppressed.values()))

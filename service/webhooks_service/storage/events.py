"""Storing published events and fanning them out into deliveries.

``insert_events`` is the publish transaction: it checks the organisations,
inserts the events (idempotent on ``(organisation_id, event_id)`` through
``ON CONFLICT DO NOTHING``, so concurrent publishers of one id agree on who
stored it), creates one pending, immediately due delivery per matching
enabled configuration, and on PostgreSQL sends ``NOTIFY webhooks_deliveries``
so that workers in other processes wake up when the transaction commits.
All of it is atomic: an event is never visible without its deliveries. On
SQLite that is one write transaction; on PostgreSQL, where every round trip
counts in publish latency, it is one statement run in autocommit mode (after
reading the configurations), so that psycopg sends no BEGIN and no COMMIT of
their own: three round trips (pool ping, read, write) instead of six.

With a ``Handoff`` (free slots of this process's worker, see
``storage.queue``), deliveries that fit are inserted already claimed under a
fresh lease and given to the worker after the commit, with everything it
needs to send them (payload, URL, secrets): no claim query. The NOTIFY is
then sent only if some delivery was left unclaimed for the other workers.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from webhooks_service.errors import NotFound
from webhooks_service.storage import db
from webhooks_service.storage.models import (
    Delivery,
    Event,
    Organisation,
    UTCDateTime,
    WebhookConfig,
)
from webhooks_service.storage.queue import (
    ClaimedDelivery,
    Handoff,
    Lease,
    new_lease,
    writing,
)

NOTIFY_CHANNEL = "webhooks_deliveries"
# Sent as the NOTIFY payload: a worker ignores notifications from its own
# process, which it has already been woken for in-process.
PROCESS_TOKEN = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

# PostgreSQL: the whole publish in one statement (one round trip, atomic).
# Every input event carries its planned deliveries ("targets", each perhaps
# handed over); only events actually inserted (not duplicates) get theirs.
_PG_INSERT = sa.text(
    f"""
    WITH v AS (
        SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS x(
            organisation_id text, event_id text, event_type text, occurred_at timestamptz,
            payload text, traceparent text, targets json)
    ), e AS (
        INSERT INTO events (organisation_id, event_id, event_type, occurred_at, payload,
                            traceparent, created_at)
        SELECT organisation_id, event_id, event_type, occurred_at, payload, traceparent, :now
        FROM v
        ON CONFLICT (organisation_id, event_id) DO NOTHING
        RETURNING pk, organisation_id, event_id
    ), d AS (
        INSERT INTO deliveries (organisation_id, event_pk, config_id, status, attempts,
                                next_attempt_at, claim_token, created_at, updated_at)
        SELECT e.organisation_id, e.pk, t.config_id, 'pending', 0,
               CASE WHEN t.claimed THEN :lease_end ELSE :now END,
               CASE WHEN t.claimed THEN :claim_token END, :now, :now
        FROM e JOIN v ON v.organisation_id = e.organisation_id AND v.event_id = e.event_id
        CROSS JOIN LATERAL json_to_recordset(v.targets) AS t(config_id text, claimed boolean)
        RETURNING id, event_pk, config_id, claim_token
    )
    -- the events stored (the others were duplicates) ...
    SELECT 'event' AS kind, pk, organisation_id, event_id, NULL AS delivery_id,
           NULL AS config_id
    FROM e
    UNION ALL
    -- ... the deliveries handed to this process's worker ...
    SELECT 'handed', event_pk, NULL, NULL, id, config_id FROM d WHERE claim_token IS NOT NULL
    UNION ALL
    -- ... and a wake-up for the other processes if any delivery is left for them
    SELECT 'notified', NULL, NULL, NULL, NULL, NULL FROM (
        SELECT pg_notify('{NOTIFY_CHANNEL}', :token)
        WHERE EXISTS (SELECT 1 FROM d WHERE claim_token IS NULL)
    ) AS notified
    """
).bindparams(
    sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("lease_end", type_=UTCDateTime())
)

events = cast(sa.Table, Event.__table__)
deliveries = cast(sa.Table, Delivery.__table__)
configs = cast(sa.Table, WebhookConfig.__table__)
organisations = cast(sa.Table, Organisation.__table__)


@dataclass(frozen=True, slots=True)
class NewEvent:
    organisation_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: str  # the exact JSON body every endpoint receives
    traceparent: str | None = None  # the publish span's (observability/tracing.py)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    deliveries: int  # deliveries created (0 for a duplicate)
    duplicate: bool


Matcher = Callable[[list[str], str], bool]


@dataclass(frozen=True, slots=True)
class _Target:
    """An enabled configuration, with what a handed-over delivery needs."""

    config_id: str
    patterns: list[str]
    url: str
    secret: str
    previous_secret: str | None  # None once its grace period is over
    timeout_seconds: float | None
    headers: str | None = None  # custom request headers (stored form)


def insert_events(
    engine: Engine,
    new_events: Sequence[NewEvent],
    *,
    now: datetime,
    matches: Matcher,
    handoff: Handoff | None = None,
) -> list[StoredEvent]:
    """Store events and their deliveries atomically; results in input order.

    ``matches(patterns, event_type)`` decides whether a configuration's event
    types cover an event. An event id already published by the organisation
    (before, or earlier in this batch) is a duplicate: nothing is stored for
    it. Raises NotFound when an organisation does not exist.

    ``handoff``: the deliveries it takes are inserted claimed and passed to
    ``handoff.leased`` after the commit (never when the write fails).

    SQLite: one write transaction (``BEGIN IMMEDIATE``). PostgreSQL: two
    round trips in autocommit mode, a read of the configurations and ONE
    statement that inserts the events, their deliveries and the NOTIFY (a
    statement is atomic on its own: no BEGIN and COMMIT round trips, and
    under READ COMMITTED a transaction around the two would see no more).
    """
    if not new_events:
        return []
    org_ids = sorted({e.organisation_id for e in new_events})
    seen: set[tuple[str, str]] = set()
    unique: list[NewEvent] = []
    for e in new_events:
        key = (e.organisation_id, e.event_id)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    lease = new_lease(now, handoff.lease_seconds) if handoff is not None else None
    sqlite_db = db.is_sqlite(engine)
    with writing(engine) if sqlite_db else _autocommit(engine) as conn:
        by_org = _targets(conn, org_ids, now)
        # Which deliveries each event gets, and which of them are handed over.
        plans: dict[tuple[str, str], list[tuple[_Target, bool]]] = {}
        for e in unique:
            plans[(e.organisation_id, e.event_id)] = [
                (target, handoff is not None and handoff.take(target.config_id))
                for target in by_org.get(e.organisation_id, ())
                if matches(target.patterns, e.event_type)
            ]
        if sqlite_db:
            stored, handed = _insert_sqlite(conn, unique, plans, now, lease)
        else:
            stored, handed = _insert_pg(conn, unique, plans, now, lease)

    if handoff is not None and lease is not None and handed:
        # Committed: the worker may start them.
        by_pk = {pk: key for key, pk in stored.items()}
        events_by_key = {(e.organisation_id, e.event_id): e for e in unique}
        targets = {t.config_id: t for ts in by_org.values() for t in ts}
        handoff.leased(
            [
                _handed_over(i, pk, events_by_key[by_pk[pk]], targets[config_id], lease)
                for i, pk, config_id in handed
            ]
        )

    results: list[StoredEvent] = []
    first: set[tuple[str, str]] = set()
    for e in new_events:
        key = (e.organisation_id, e.event_id)
        if key in stored and key not in first:
            first.add(key)
            results.append(StoredEvent(e.event_id, len(plans[key]), False))
        else:
            results.append(StoredEvent(e.event_id, 0, True))
    return results


@contextmanager
def _autocommit(engine: Engine) -> Iterator[sa.Connection]:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def _targets(conn: sa.Connection, org_ids: list[str], now: datetime) -> dict[str, list[_Target]]:
    """The organisations' enabled configurations (NotFound for a missing organisation)."""
    found: set[str] = set()
    by_org: dict[str, list[_Target]] = {}
    for r in conn.execute(_TARGETS, {"org_ids": org_ids}):
        found.add(r.id)
        if r.config_id is not None:
            expires = r.previous_secret_expires_at
            by_org.setdefault(r.id, []).append(
                _Target(
                    r.config_id,
                    list(r.event_types),
                    r.url,
                    r.secret,
                    r.previous_secret if expires is None or expires > now else None,
                    r.timeout_seconds,
                    r.headers,
                )
            )
    missing = [o for o in org_ids if o not in found]
    if missing:
        raise NotFound(f"organisation {missing[0]} not found")
    return by_org


# The statements of the hot path are built once: building them per call
# costs more Python time than SQLite takes to run them.
_TARGETS = (
    sa.select(
        organisations.c.id,
        configs.c.id.label("config_id"),
        configs.c.event_types,
        configs.c.url,
        configs.c.secret,
        configs.c.previous_secret,
        configs.c.previous_secret_expires_at,
        configs.c.timeout_seconds,
        configs.c.headers,
    )
    .select_from(
        organisations.outerjoin(
            configs,
            sa.and_(
                configs.c.organisation_id == organisations.c.id,
                configs.c.enabled.is_(True),
            ),
        )
    )
    .where(organisations.c.id.in_(sa.bindparam("org_ids", expanding=True)))
    .order_by(configs.c.created_at, configs.c.id)
)
_SQLITE_INSERT_EVENTS = (
    sqlite.insert(events)
    .on_conflict_do_nothing(index_elements=["organisation_id", "event_id"])
    .returning(events.c.organisation_id, events.c.event_id, events.c.pk)
)
_INSERT_DELIVERIES = sa.insert(deliveries)
_INSERT_DELIVERIES_RETURNING = _INSERT_DELIVERIES.returning(
    deliveries.c.id, deliveries.c.event_pk, deliveries.c.config_id, deliveries.c.claim_token
)

Plans = dict[tuple[str, str], list[tuple[_Target, bool]]]
Handed = list[tuple[int, int, str]]  # (delivery id, event pk, config id) handed over


def _insert_sqlite(
    conn: sa.Connection,
    unique: list[NewEvent],
    plans: Plans,
    now: datetime,
    lease: Lease | None,
) -> tuple[dict[tuple[str, str], int], Handed]:
    inserted_events = conn.execute(
        _SQLITE_INSERT_EVENTS,
        [
            {
                "organisation_id": e.organisation_id,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "occurred_at": e.occurred_at,
                "payload": e.payload,
                "traceparent": e.traceparent,
                "created_at": now,
            }
            for e in unique
        ],
    )
    stored = {(r.organisation_id, r.event_id): r.pk for r in inserted_events}
    rows = [
        {
            "organisation_id": key[0],
            "event_pk": pk,
            "config_id": target.config_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": lease.until if claimed and lease else now,
            "claim_token": lease.token if claimed and lease else None,
            "created_at": now,
            "updated_at": now,
        }
        for key, pk in stored.items()
        for target, claimed in plans[key]
    ]
    if not rows:
        return stored, []
    if not any(r["claim_token"] for r in rows):
        conn.execute(_INSERT_DELIVERIES, rows)
        return stored, []
    inserted = conn.execute(_INSERT_DELIVERIES_RETURNING, rows)
    return stored, [(r.id, r.event_pk, r.config_id) for r in inserted if r.claim_token]


def _insert_pg(
    conn: sa.Connection,
    unique: list[NewEvent],
    plans: Plans,
    now: datetime,
    lease: Lease | None,
) -> tuple[dict[tuple[str, str], int], Handed]:
    rows = [
        {
            "organisation_id": e.organisation_id,
            "event_id": e.event_id,
            "event_type": e.event_type,
            "occurred_at": e.occurred_at.isoformat(),
            "payload": e.payload,
            "traceparent": e.traceparent,
            "targets": [
                {"config_id": t.config_id, "claimed": claimed}
                for t, claimed in plans[(e.organisation_id, e.event_id)]
            ],
        }
        for e in unique
    ]
    result = conn.execute(
        _PG_INSERT,
        {
            "rows": json.dumps(rows, separators=(",", ":")),
            "now": now,
            "token": PROCESS_TOKEN,
            "lease_end": lease.until if lease else now,
            "claim_token": lease.token if lease else None,
        },
    )
    stored: dict[tuple[str, str], int] = {}
    handed: Handed = []
    for r in result:
        if r.kind == "event":
            stored[(r.organisation_id, r.event_id)] = r.pk
        elif r.kind == "handed":
            handed.append((r.delivery_id, r.pk, r.config_id))
    return stored, handed


def _handed_over(
    delivery_id: int, event_pk: int, event: NewEvent, target: _Target, lease: Lease
) -> ClaimedDelivery:
    """The claim record of a delivery inserted under ``lease`` (its first attempt)."""
    return ClaimedDelivery(
        id=delivery_id,
        claim_token=lease.token,
        attempt=1,
        organisation_id=event.organisation_id,
        config_id=target.config_id,
        event_pk=event_pk,
        event_id=event.event_id,
        event_type=event.event_type,
        payload=event.payload,
        url=target.url,
        secret=target.secret,
        previous_secret=target.previous_secret,
        timeout_seconds=target.timeout_seconds,
        enabled=True,
        lease_until=lease.until,
        headers=target.headers,
        traceparent=event.traceparent,
    )

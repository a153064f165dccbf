"""Storing published events and fanning them out into deliveries.

``insert_events`` is the publish transaction: it checks the organisations,
inserts the events (idempotent on ``(organisation_id, event_id)`` through
``ON CONFLICT DO NOTHING``, so concurrent publishers of one id agree on who
stored it), creates one pending, immediately due delivery per matching
enabled configuration, and on PostgreSQL sends ``NOTIFY webhooks_deliveries``
so that workers in other processes wake up when the transaction commits.
All of it is one transaction: an event is never visible without its
deliveries.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
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
from webhooks_service.storage.queue import writing

NOTIFY_CHANNEL = "webhooks_deliveries"
# Sent as the NOTIFY payload: a worker ignores notifications from its own
# process, which it has already been woken for in-process.
PROCESS_TOKEN = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

_PG_INSERT_DELIVERIES = sa.text(
    f"""
    WITH ins AS (
        INSERT INTO deliveries (organisation_id, event_pk, config_id, status, attempts,
                                next_attempt_at, created_at, updated_at)
        SELECT x.organisation_id, x.event_pk, x.config_id, 'pending', 0, :now, :now, :now
        FROM json_to_recordset(CAST(:rows AS json))
             AS x(organisation_id text, event_pk bigint, config_id text)
        RETURNING 1
    )
    SELECT pg_notify('{NOTIFY_CHANNEL}', :token) WHERE EXISTS (SELECT 1 FROM ins)
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime()))

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


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    deliveries: int  # deliveries created (0 for a duplicate)
    duplicate: bool


Matcher = Callable[[list[str], str], bool]


def insert_events(
    engine: Engine, new_events: Sequence[NewEvent], *, now: datetime, matches: Matcher
) -> list[StoredEvent]:
    """Store events and their deliveries in one transaction; results in input order.

    ``matches(patterns, event_type)`` decides whether a configuration's event
    types cover an event. An event id already published by the organisation
    (before, or earlier in this batch) is a duplicate: nothing is stored for
    it. Raises NotFound when an organisation does not exist.
    """
    if not new_events:
        return []
    org_ids = sorted({e.organisation_id for e in new_events})
    insert = postgresql.insert if not db.is_sqlite(engine) else sqlite.insert
    with writing(engine) as conn:
        # The organisations and their enabled configurations, in one query.
        found: set[str] = set()
        by_org: dict[str, list[tuple[str, list[str]]]] = {}
        rows = conn.execute(
            sa.select(organisations.c.id, configs.c.id.label("config_id"), configs.c.event_types)
            .select_from(
                organisations.outerjoin(
                    configs,
                    sa.and_(
                        configs.c.organisation_id == organisations.c.id,
                        configs.c.enabled.is_(True),
                    ),
                )
            )
            .where(organisations.c.id.in_(org_ids))
            .order_by(configs.c.created_at, configs.c.id)
        )
        for r in rows:
            found.add(r.id)
            if r.config_id is not None:
                by_org.setdefault(r.id, []).append((r.config_id, list(r.event_types)))
        missing = [o for o in org_ids if o not in found]
        if missing:
            raise NotFound(f"organisation {missing[0]} not found")

        seen: set[tuple[str, str]] = set()
        unique: list[NewEvent] = []
        for e in new_events:
            key = (e.organisation_id, e.event_id)
            if key not in seen:
                seen.add(key)
                unique.append(e)
        stmt = (
            insert(events)
            .values(
                [
                    {
                        "organisation_id": e.organisation_id,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "occurred_at": e.occurred_at,
                        "payload": e.payload,
                        "created_at": now,
                    }
                    for e in unique
                ]
            )
            .on_conflict_do_nothing(index_elements=["organisation_id", "event_id"])
            .returning(events.c.organisation_id, events.c.event_id, events.c.pk)
        )
        stored = {(r.organisation_id, r.event_id): r.pk for r in conn.execute(stmt)}

        new_deliveries: list[dict[str, object]] = []
        counts: dict[tuple[str, str], int] = {}
        for e in unique:
            key = (e.organisation_id, e.event_id)
            pk = stored.get(key)
            if pk is None:
                continue
            n = 0
            for config_id, patterns in by_org.get(e.organisation_id, ()):
                if matches(patterns, e.event_type):
                    n += 1
                    new_deliveries.append(
                        {
                            "organisation_id": e.organisation_id,
                            "event_pk": pk,
                            "config_id": config_id,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "claim_token": None,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
            counts[key] = n
        if new_deliveries and db.is_sqlite(engine):
            conn.execute(sa.insert(deliveries), new_deliveries)
        elif new_deliveries:
            # One round trip: insert every delivery and NOTIFY the workers
            # (delivered to listeners when this transaction commits).
            keys = ("organisation_id", "event_pk", "config_id")
            conn.execute(
                _PG_INSERT_DELIVERIES,
                {
                    "rows": json.dumps([{k: d[k] for k in keys} for d in new_deliveries]),
                    "now": now,
                    "token": PROCESS_TOKEN,
                },
            )

    results: list[StoredEvent] = []
    first: set[tuple[str, str]] = set()
    for e in new_events:
        key = (e.organisation_id, e.event_id)
        if key in counts and key not in first:
            first.add(key)
            results.append(StoredEvent(e.event_id, counts[key], False))
        else:
            results.append(StoredEvent(e.event_id, 0, True))
    return results

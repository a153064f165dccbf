"""Storing published events and fanning them out into deliveries.

``insert_events`` is the publish transaction: it checks the organisations,
inserts the events (idempotent on ``(organisation_id, event_id)`` through
``ON CONFLICT DO NOTHING``, so concurrent publishers of one id agree on who
stored it), creates one pending, immediately due delivery per matching
enabled configuration, and on PostgreSQL sends ``NOTIFY webhooks_deliveries``
so that workers in other processes wake up when the transaction commits.
All of it is one transaction: an event is never visible without its
deliveries.

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

_PG_INSERT_DELIVERIES = sa.text(
    f"""
    WITH ins AS (
        INSERT INTO deliveries (organisation_id, event_pk, config_id, status, attempts,
                                next_attempt_at, claim_token, created_at, updated_at)
        SELECT x.organisation_id, x.event_pk, x.config_id, 'pending', 0,
               CASE WHEN x.claimed THEN :lease_end ELSE :now END,
               CASE WHEN x.claimed THEN :claim_token END, :now, :now
        FROM json_to_recordset(CAST(:rows AS json))
             AS x(organisation_id text, event_pk bigint, config_id text, claimed boolean)
        RETURNING id, event_pk, config_id, claim_token
    )
    -- the ids of the deliveries handed to this process's worker ...
    SELECT id, event_pk, config_id FROM ins WHERE claim_token IS NOT NULL
    UNION ALL
    -- ... and a wake-up for the other processes if any delivery is left for them
    SELECT NULL, NULL, NULL FROM (
        SELECT pg_notify('{NOTIFY_CHANNEL}', :token)
        WHERE EXISTS (SELECT 1 FROM ins WHERE claim_token IS NULL)
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


def insert_events(
    engine: Engine,
    new_events: Sequence[NewEvent],
    *,
    now: datetime,
    matches: Matcher,
    handoff: Handoff | None = None,
) -> list[StoredEvent]:
    """Store events and their deliveries in one transaction; results in input order.

    ``matches(patterns, event_type)`` decides whether a configuration's event
    types cover an event. An event id already published by the organisation
    (before, or earlier in this batch) is a duplicate: nothing is stored for
    it. Raises NotFound when an organisation does not exist.

    ``handoff``: the deliveries it takes are inserted claimed and passed to
    ``handoff.leased`` after the commit (never when the transaction fails).
    """
    if not new_events:
        return []
    org_ids = sorted({e.organisation_id for e in new_events})
    insert = postgresql.insert if not db.is_sqlite(engine) else sqlite.insert
    with writing(engine) as conn:
        # The organisations and their enabled configurations, in one query.
        found: set[str] = set()
        by_org: dict[str, list[_Target]] = {}
        rows = conn.execute(
            sa.select(
                organisations.c.id,
                configs.c.id.label("config_id"),
                configs.c.event_types,
                configs.c.url,
                configs.c.secret,
                configs.c.previous_secret,
                configs.c.previous_secret_expires_at,
                configs.c.timeout_seconds,
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
            .where(organisations.c.id.in_(org_ids))
            .order_by(configs.c.created_at, configs.c.id)
        )
        for r in rows:
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
                    )
                )
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

        lease = new_lease(now, handoff.lease_seconds) if handoff is not None else None
        new_deliveries: list[dict[str, object]] = []
        handed: dict[tuple[int, str], tuple[NewEvent, _Target]] = {}
        counts: dict[tuple[str, str], int] = {}
        for e in unique:
            key = (e.organisation_id, e.event_id)
            pk = stored.get(key)
            if pk is None:
                continue
            n = 0
            for target in by_org.get(e.organisation_id, ()):
                if matches(target.patterns, e.event_type):
                    n += 1
                    claimed = handoff is not None and handoff.take(target.config_id)
                    if claimed:
                        handed[(pk, target.config_id)] = (e, target)
                    new_deliveries.append(
                        {
                            "organisation_id": e.organisation_id,
                            "event_pk": pk,
                            "config_id": target.config_id,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": lease.until if claimed and lease else now,
                            "claim_token": lease.token if claimed and lease else None,
                            "created_at": now,
                            "updated_at": now,
                            "claimed": claimed,
                        }
                    )
            counts[key] = n
        ids: list[tuple[int, int, str]] = []  # (id, event_pk, config_id) of the handed over
        if new_deliveries and db.is_sqlite(engine):
            for d in new_deliveries:
                d.pop("claimed")
            if handed:
                rows = conn.execute(
                    sa.insert(deliveries).returning(
                        deliveries.c.id,
                        deliveries.c.event_pk,
                        deliveries.c.config_id,
                        deliveries.c.claim_token,
                    ),
                    new_deliveries,
                )
                ids = [(r.id, r.event_pk, r.config_id) for r in rows if r.claim_token]
            else:
                conn.execute(sa.insert(deliveries), new_deliveries)
        elif new_deliveries:
            # One round trip: insert every delivery, return the handed-over
            # ones, and NOTIFY the workers if some are left for them
            # (delivered to listeners when this transaction commits).
            keys = ("organisation_id", "event_pk", "config_id", "claimed")
            rows = conn.execute(
                _PG_INSERT_DELIVERIES,
                {
                    "rows": json.dumps([{k: d[k] for k in keys} for d in new_deliveries]),
                    "now": now,
                    "token": PROCESS_TOKEN,
                    "lease_end": lease.until if lease else now,
                    "claim_token": lease.token if lease else None,
                },
            )
            ids = [(r.id, r.event_pk, r.config_id) for r in rows if r.id is not None]

    if handoff is not None and lease is not None and ids:
        # Committed: the worker may start them.
        handoff.leased(
            [_handed_over(i, pk, handed[(pk, config_id)], lease) for i, pk, config_id in ids]
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


def _handed_over(
    delivery_id: int, event_pk: int, source: tuple[NewEvent, _Target], lease: Lease
) -> ClaimedDelivery:
    """The claim record of a delivery inserted under ``lease`` (its first attempt)."""
    event, target = source
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
    )

"""The publish writer (storage/events.py): what one ``insert`` stores and hands
over, on SQLite and PostgreSQL, and on SQLite the exact stored form of its
timestamps (the set-based statements render them themselves).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.server import make_org_and_keys
from tests.test_handoff import add_config
from webhooks_service.domain import new_lease
from webhooks_service.storage import db
from webhooks_service.storage.events import (
    NewEvent,
    PlannedEvent,
    Target,
    publish_transaction,
)
from webhooks_service.storage.models import Delivery, Event, utcnow

events = cast(sa.Table, Event.__table__)
deliveries = cast(sa.Table, Delivery.__table__)

PLUS_TWO = timezone(timedelta(hours=2))


def targets(engine: Engine, org: str) -> list[Target]:
    with publish_transaction(engine) as tx:
        return tx.targets([org])[org]


def test_insert_stores_each_event_once_and_hands_over_the_claimed(engine: Engine) -> None:
    org, _ = make_org_and_keys(engine)
    add_config(engine, org, "http://127.0.0.1:9/a")
    add_config(engine, org, "http://127.0.0.1:9/b")
    a, b = targets(engine, org)
    now = utcnow()
    lease = new_lease(now, 30)
    with publish_transaction(engine) as tx:
        tx.insert(
            [PlannedEvent(NewEvent(org, "evt_old", "reward.claimed", now, '{"v":0}'), [])],
            now=now,
            lease=None,
        )
    at = datetime(2026, 11, 27, 12, 15, 0, 250_000, tzinfo=PLUS_TWO)
    planned = [
        PlannedEvent(
            NewEvent(org, "evt_1", "reward.claimed", at, '{"v":"é✓😀\\u00e9"}', "00-t"),
            [(a, True), (b, False)],
        ),
        PlannedEvent(NewEvent(org, "evt_old", "reward.claimed", now, '{"v":1}'), [(a, True)]),
        PlannedEvent(NewEvent(org, "evt_2", "reward.claimed", now, '{"v":2}'), [(b, True)]),
        # given twice: stored once, as first given
        PlannedEvent(NewEvent(org, "evt_1", "reward.claimed", now, '{"v":3}'), [(b, True)]),
        PlannedEvent(NewEvent(org, "evt_3", "reward.claimed", now, '{"v":4}'), []),
    ]
    with publish_transaction(engine) as tx:
        inserted = tx.insert(planned, now=now, lease=lease)
    assert inserted.stored == {(org, "evt_1"), (org, "evt_2"), (org, "evt_3")}
    handed = [(d.event_id, d.config_id, d.payload, d.traceparent) for d in inserted.handed]
    assert handed == [
        ("evt_1", a.config_id, '{"v":"é✓😀\\u00e9"}', "00-t"),
        ("evt_2", b.config_id, '{"v":2}', None),
    ]
    assert {(d.claim_token, d.lease_until) for d in inserted.handed} == {(lease.token, lease.until)}

    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                events.c.pk,
                events.c.event_id,
                events.c.occurred_at,
                events.c.payload,
                events.c.traceparent,
                events.c.created_at,
            ).order_by(events.c.pk)
        ).all()
        rows = conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.event_pk,
                deliveries.c.config_id,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.next_attempt_at,
                deliveries.c.claim_token,
                deliveries.c.created_at,
                deliveries.c.updated_at,
            ).order_by(deliveries.c.id)
        ).all()
    assert [(e.event_id, e.payload, e.traceparent) for e in stored] == [
        ("evt_old", '{"v":0}', None),
        ("evt_1", '{"v":"é✓😀\\u00e9"}', "00-t"),
        ("evt_2", '{"v":2}', None),
        ("evt_3", '{"v":4}', None),
    ]
    assert stored[1].occurred_at == at and stored[1].occurred_at.tzinfo == UTC
    assert all(e.created_at == now for e in stored)
    pk = {e.event_id: e.pk for e in stored}
    assert [(r.event_pk, r.config_id, r.claim_token, r.next_attempt_at) for r in rows] == [
        (pk["evt_1"], a.config_id, lease.token, lease.until),
        (pk["evt_1"], b.config_id, None, now),
        (pk["evt_2"], b.config_id, lease.token, lease.until),
    ]
    assert all(
        (r.status, r.attempts, r.created_at, r.updated_at) == ("pending", 0, now, now) for r in rows
    )
    assert [(d.id, d.event_pk) for d in inserted.handed] == [
        (rows[0].id, pk["evt_1"]),
        (rows[2].id, pk["evt_2"]),
    ]


def test_insert_without_a_lease_leaves_everything_due(engine: Engine) -> None:
    org, _ = make_org_and_keys(engine)
    add_config(engine, org, "http://127.0.0.1:9/a")
    [a] = targets(engine, org)
    now = utcnow()
    with publish_transaction(engine) as tx:
        inserted = tx.insert(
            [PlannedEvent(NewEvent(org, "evt_1", "reward.claimed", now, "{}"), [(a, True)])],
            now=now,
            lease=None,
        )
    assert inserted.handed == []
    with engine.connect() as conn:
        row = conn.execute(sa.select(deliveries.c.claim_token, deliveries.c.next_attempt_at)).one()
    assert tuple(row) == (None, now)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    engine = db.create_engine(f"sqlite:///{tmp_path}/t.db")
    db.upgrade(engine)
    return engine


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 27, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 27, 10, 15, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 27, 0, 15, 0, 250_000, tzinfo=PLUS_TWO),  # the day before in UTC
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ],
)
def test_sqlite_timestamps_are_stored_as_sqlalchemy_stores_them(
    sqlite_engine: Engine, value: datetime
) -> None:
    org, _ = make_org_and_keys(sqlite_engine)
    add_config(sqlite_engine, org, "http://127.0.0.1:9/a")
    [a] = targets(sqlite_engine, org)
    lease = new_lease(value, 0.5)
    with publish_transaction(sqlite_engine) as tx:
        tx.insert(
            [
                PlannedEvent(NewEvent(org, "evt_1", "reward.claimed", value, "{}"), [(a, True)]),
                PlannedEvent(NewEvent(org, "evt_2", "reward.claimed", value, "{}"), [(a, False)]),
            ],
            now=value,
            lease=lease,
        )
    with db.write_transaction(sqlite_engine) as conn:
        # the same values through SQLAlchemy's own binding
        conn.execute(
            sa.insert(events).values(
                organisation_id=org,
                event_id="ref",
                event_type="reward.claimed",
                occurred_at=value,
                payload="{}",
                created_at=value,
            )
        )
        ref_pk = conn.execute(sa.text("SELECT pk FROM events WHERE event_id = 'ref'")).scalar()
        conn.execute(
            sa.insert(deliveries),
            [
                {
                    "organisation_id": org,
                    "event_pk": ref_pk,
                    "config_id": a.config_id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": when,
                    "claim_token": None,
                    "created_at": value,
                    "updated_at": value,
                }
                for when in (lease.until, value)
            ],
        )
        stored_events = conn.execute(
            sa.text("SELECT typeof(occurred_at), occurred_at, created_at FROM events")
        ).all()
        stored_deliveries = conn.execute(
            sa.text("SELECT next_attempt_at, created_at, updated_at FROM deliveries ORDER BY id")
        ).all()
    assert len(stored_events) == 3 and len(set(stored_events)) == 1
    assert stored_events[0][0] == "text"
    assert stored_deliveries[:2] == stored_deliveries[2:]


def test_sqlite_refuses_a_naive_datetime(sqlite_engine: Engine) -> None:
    org, _ = make_org_and_keys(sqlite_engine)
    naive = datetime(2026, 11, 27, 10, 15)
    with pytest.raises(ValueError, match="naive"), publish_transaction(sqlite_engine) as tx:
        tx.insert(
            [PlannedEvent(NewEvent(org, "evt_1", "reward.claimed", naive, "{}"), [])],
            now=utcnow(),
            lease=None,
        )


def test_payloads_are_stored_exactly_and_a_raw_record_separator_is_refused(
    engine: Engine,
) -> None:
    # PostgreSQL gets the payloads joined by U+001E, which JSON text only holds escaped.
    org, _ = make_org_and_keys(engine)
    now = utcnow()
    bodies = ['{"v":"\\u001e"}', '{"v":"a\\nb\\\\","w":"\u2028é"}', "{}"]
    with publish_transaction(engine) as tx:
        inserted = tx.insert(
            [
                PlannedEvent(NewEvent(org, f"evt_{i}", "reward.claimed", now, body), [])
                for i, body in enumerate(bodies)
            ],
            now=now,
            lease=None,
        )
    assert len(inserted.stored) == 3
    with engine.connect() as conn:
        stored = conn.execute(sa.select(events.c.payload).order_by(events.c.pk)).scalars()
        assert list(stored) == bodies
    if db.is_sqlite(engine):
        return
    with pytest.raises(ValueError, match="U\\+001E"), publish_transaction(engine) as tx:
        tx.insert(
            [PlannedEvent(NewEvent(org, "evt_raw", "reward.claimed", now, '{"v":"\x1e"}'), [])],
            now=now,
            lease=None,
        )

"""``storage.queue.finish_batch``: an attempt is recorded only by the claim that
still owns its delivery, on SQLite and PostgreSQL (each dialect finds the
owned deliveries its own way: storage/queue.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.server import make_org_and_keys
from tests.test_handoff import add_config
from tests.test_ordering import attempt_of
from webhooks_service.domain import ClaimedDelivery, FinishedAttempt
from webhooks_service.storage import queue
from webhooks_service.storage.events import NewEvent, PlannedEvent, publish_transaction
from webhooks_service.storage.models import Delivery, DeliveryAttempt, utcnow

deliveries = cast(sa.Table, Delivery.__table__)
attempts = cast(sa.Table, DeliveryAttempt.__table__)


def delivered(c: ClaimedDelivery, at: datetime) -> FinishedAttempt:
    base: FinishedAttempt = attempt_of(c, "delivered")  # test_ordering's, the same record
    return replace(base, attempted_at=at, response_status_code=200, response_body="ok")


def test_an_attempt_whose_lease_was_lost_is_not_logged_and_leaves_the_new_claim(
    engine: Engine,
) -> None:
    org, _ = make_org_and_keys(engine)
    config = add_config(engine, org, "http://127.0.0.1:9/hook")
    now = utcnow()
    with publish_transaction(engine) as tx:
        targets = tx.targets([org])[org]
        tx.insert(
            [
                PlannedEvent(NewEvent(org, f"evt_{i}", "reward.claimed", now, "{}"), [(t, False)])
                for i in range(3)
                for t in targets
            ],
            now=now,
            lease=None,
        )
    first = queue.claim_due(engine, now=now, lease_seconds=30, limit=10)
    assert len(first) == 3
    # The first claim's lease runs out; another worker claims one of them again.
    later = now + timedelta(seconds=31)
    (again,) = queue.claim_due(engine, now=later, lease_seconds=30, limit=1)
    assert again.claim_token != first[0].claim_token

    recorded = queue.finish_batch(engine, [delivered(c, later) for c in first], now=later)

    assert recorded == 2
    with engine.connect() as conn:
        logged = conn.execute(
            sa.select(attempts.c.delivery_id, attempts.c.config_id, attempts.c.response_body)
        ).all()
        rows = {
            r.id: r
            for r in conn.execute(
                sa.select(deliveries.c.id, deliveries.c.status, deliveries.c.claim_token).order_by(
                    deliveries.c.id
                )
            )
        }
    assert sorted(r.delivery_id for r in logged) == sorted(c.id for c in first if c.id != again.id)
    assert {(r.config_id, r.response_body) for r in logged} == {(config, "ok")}
    assert rows[again.id].status == "pending"
    assert rows[again.id].claim_token == again.claim_token
    assert {rows[c.id].status for c in first if c.id != again.id} == {"delivered"}

    # The new owner's attempt is recorded; the old owner's again is not.
    assert queue.finish_batch(engine, [delivered(again, later)], now=later) == 1
    assert queue.finish_batch(engine, [delivered(first[0], later)], now=later) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(attempts)).scalar() == 3

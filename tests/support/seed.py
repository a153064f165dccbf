"""Direct inserts for tests that need rows the delivery worker would write.

The worker is the real writer of events, deliveries and attempts; tests of
the delivery log only need rows of the right shape, fast.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from webhooks_service.domain import STATUS_AFTER, Outcome, utcnow
from webhooks_service.storage import db
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event

EVENTS = cast(sa.Table, Event.__table__)
DELIVERIES = cast(sa.Table, Delivery.__table__)
ATTEMPTS = cast(sa.Table, DeliveryAttempt.__table__)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def seed_attempts(
    engine: Engine,
    org_id: str,
    config_ids: Sequence[str],
    count: int,
    *,
    event_types: Sequence[str] = ("reward.claimed", "user.authenticated", "challenge.started"),
    outcomes: Sequence[str] = ("delivered", "retry_scheduled", "failed", "dead"),
) -> list[int]:
    """Insert ``count`` attempts (one event and delivery each), cycling through
    configs, types and outcomes; returns the attempt ids in insertion order.

    Each delivery has the status its attempt's outcome leaves
    (``domain.STATUS_AFTER``); a retry-scheduled one is pending, its retry due
    a day from now, so that a running worker does not attempt it meanwhile.
    """
    ids: list[int] = []
    retry_at = utcnow() + timedelta(days=1)
    cycle = zip(
        itertools.cycle(config_ids),
        itertools.cycle(event_types),
        itertools.cycle(outcomes),
        strict=False,
    )
    with db.write_transaction(engine) as conn:
        for i, (config_id, event_type, name) in zip(range(count), cycle, strict=False):
            outcome = Outcome(name)
            retried = outcome is Outcome.RETRY_SCHEDULED
            when = T0 + timedelta(seconds=i)
            event_id = f"evt_{uuid.uuid4().hex[:16]}"
            body = json.dumps(
                {"id": event_id, "type": event_type, "timestamp": when.isoformat(), "data": {}}
            )
            event_pk = conn.execute(
                sa.insert(EVENTS)
                .values(
                    organisation_id=org_id,
                    event_id=event_id,
                    event_type=event_type,
                    occurred_at=when,
                    payload=body,
                    created_at=when,
                )
                .returning(EVENTS.c.pk)
            ).scalar_one()
            delivery_id = conn.execute(
                sa.insert(DELIVERIES)
                .values(
                    organisation_id=org_id,
                    event_pk=event_pk,
                    config_id=config_id,
                    status=STATUS_AFTER[outcome],
                    attempts=1,
                    next_attempt_at=retry_at if retried else when,
                    claim_token=None,
                    created_at=when,
                    updated_at=when,
                )
                .returning(DELIVERIES.c.id)
            ).scalar_one()
            attempt_id = conn.execute(
                sa.insert(ATTEMPTS)
                .values(
                    organisation_id=org_id,
                    delivery_id=delivery_id,
                    event_pk=event_pk,
                    event_id=event_id,
                    event_type=event_type,
                    config_id=config_id,
                    attempt=1,
                    url="https://example.com/hook",
                    response_status_code=200 if outcome is Outcome.DELIVERED else 500,
                    response_body="ok",
                    response_body_truncated=False,
                    error="",
                    duration_ms=12,
                    outcome=outcome,
                    attempted_at=when,
                    next_attempt_at=retry_at if retried else None,
                )
                .returning(ATTEMPTS.c.id)
            ).scalar_one()
            ids.append(int(attempt_id))
    return ids

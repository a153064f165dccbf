"""Putting deliveries back in the queue by hand: retry one, replay a range.

The admin RPCs RetryDelivery and ReplayDeliveries change the
queue (the ``deliveries`` table) outside the worker's claim/finish cycle.
Each change here is one short write transaction that respects the worker's
lease: a pending delivery that carries a ``claim_token`` is being attempted
and is never touched (its worker would otherwise lose the right to record
the attempt). Ended deliveries (delivered, failed, dead) carry no token, so
moving them back to pending cannot race with a worker; the conditional
UPDATEs re-check the status under the row lock anyway, so two admins
retrying at once still schedule one attempt.

After a change that makes work due, PostgreSQL gets ``NOTIFY
webhooks_deliveries`` (delivered at commit) so that workers in other
processes wake up; the caller wakes the in-process worker itself.

Decisions (what may be retried, limits, errors) are the use cases' in
``core/redelivery.py``; this module only reads and
writes rows and returns plain dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from webhooks_service.domain import (
    ENDED,
    HELD_UNTIL,
    PARKED_UNTIL,
    DeliveryStatus,
    VerificationStatus,
)
from webhooks_service.storage import db, ordering
from webhooks_service.storage.delivery_state import DeliveryState, select_state, state_of
from webhooks_service.storage.events import NOTIFY_CHANNEL, PROCESS_TOKEN
from webhooks_service.storage.models import Delivery, Event, UTCDateTime, WebhookConfig
from webhooks_service.storage.recent_events import StoredEvent

_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_C = cast(sa.Table, WebhookConfig.__table__)


def get_delivery(
    conn: sa.Connection, organisation_id: str, delivery_id: int
) -> DeliveryState | None:
    """The organisation's delivery ``delivery_id``; None if absent or another's."""
    row = conn.execute(
        select_state().where(_D.c.id == delivery_id, _D.c.organisation_id == organisation_id)
    ).first()
    return None if row is None else state_of(row)


def notify_workers(conn: sa.Connection) -> None:
    """Wake workers of other processes at commit (PostgreSQL; SQLite has no NOTIFY).

    The payload is this process's token, like publish's: the caller wakes the
    in-process worker directly, so its own listener ignores the echo.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :token)"),
            {"channel": NOTIFY_CHANNEL, "token": PROCESS_TOKEN},
        )


def schedule_now(conn: sa.Connection, state: DeliveryState, now: datetime) -> bool:
    """Make the delivery due at ``now``; False when there was nothing to do.

    Ended: back to pending. Pending, unclaimed and due later: due now.
    Pending and claimed, or already due: unchanged. The WHERE clause repeats
    the condition, so a concurrent claim or retry wins cleanly.

    Ordered delivery: an ended delivery of an ordered key goes back into its
    key's queue (held, then promoted at once if the key is idle); one waiting
    for its turn is left waiting (False).
    """
    update = sa.update(_D).where(_D.c.id == state.id)
    due = now
    if state.status in ENDED:
        # An endpoint pending ownership verification: the delivery waits for it.
        due = PARKED_UNTIL if _waits(conn, state.config_id) else now
        update = update.where(_D.c.status == state.status).values(
            status=DeliveryStatus.PENDING,
            next_attempt_at=HELD_UNTIL if state.ordered else due,
            claim_token=None,
            updated_at=now,
        )
    elif (
        state.status is DeliveryStatus.PENDING
        and not state.claimed
        and now < state.next_attempt_at < PARKED_UNTIL  # parked or held: keeps waiting
    ):
        update = update.where(
            _D.c.status == DeliveryStatus.PENDING,
            _D.c.claim_token.is_(None),
            _D.c.next_attempt_at > now,
            _D.c.next_attempt_at < HELD_UNTIL,
        ).values(next_attempt_at=now, updated_at=now)
    else:
        return False
    changed = bool(conn.execute(update).rowcount)
    if changed and state.status in ENDED and state.ordered and state.ordering_key:
        ordering.promote(
            conn, [(state.organisation_id, state.config_id, state.ordering_key)], now=now, due=due
        )
    return changed


def retry_delivery(
    engine: Engine,
    organisation_id: str,
    delivery_id: int,
    now: datetime,
    *,
    require_enabled: bool = True,
) -> tuple[DeliveryState | None, bool]:
    """Read the delivery and, if its endpoint is enabled, schedule it now.

    Returns (the delivery after the change or None if not found, whether
    this call scheduled it). With a disabled endpoint nothing is written.
    """
    with db.write_transaction(engine) as conn:
        state = get_delivery(conn, organisation_id, delivery_id)
        if state is None or (require_enabled and not state.config_enabled):
            return state, False
        scheduled = schedule_now(conn, state, now)
        if scheduled:
            notify_workers(conn)
            state = get_delivery(conn, organisation_id, delivery_id)
    return state, scheduled


def _waits(conn: sa.Connection, config_id: str) -> bool:
    """Whether the configuration waits for its ownership verification."""
    status = conn.execute(sa.select(_C.c.verification_status).where(_C.c.id == config_id)).scalar()
    return status == VerificationStatus.PENDING


def config_enabled(conn: sa.Connection, organisation_id: str, config_id: str) -> bool | None:
    """Whether the organisation's configuration is enabled; None if absent or another's."""
    flags = _config_flags(conn, organisation_id, config_id)
    return None if flags is None else flags[0]


def _config_flags(
    conn: sa.Connection, organisation_id: str, config_id: str
) -> tuple[bool, bool] | None:
    """(enabled, ordered) of the organisation's configuration; None if absent or another's."""
    row = conn.execute(
        sa.select(_C.c.enabled, _C.c.ordered).where(
            _C.c.id == config_id,
            _C.c.organisation_id == organisation_id,
            _C.c.deleted_at.is_(None),
        )
    ).first()
    return None if row is None else (bool(row[0]), bool(row[1]))


def _range_clause(
    organisation_id: str,
    config_id: str,
    statuses: Sequence[str],
    since: datetime,
    until: datetime,
) -> list[sa.ColumnElement[bool]]:
    # The (config_id, created_at) index serves the range; the rest filters it.
    return [
        _D.c.config_id == config_id,
        _D.c.created_at >= since,
        _D.c.created_at < until,
        _D.c.organisation_id == organisation_id,
        _D.c.status.in_(list(statuses)),
    ]


def _stored(conn: sa.Connection, query: sa.Select[Any]) -> list[StoredEvent]:
    rows = conn.execute(
        query.add_columns(_E.c.event_id, _E.c.event_type, _E.c.occurred_at, _E.c.payload).join(
            _E, _E.c.pk == _D.c.event_pk
        )
    )
    return [StoredEvent(r.id, r.event_id, r.event_type, r.occurred_at, r.payload) for r in rows]


def config_filter(conn: sa.Connection, organisation_id: str, config_id: str) -> str:
    """The configuration's payload filter as it is now ("" for none or no such config)."""
    value = conn.execute(
        sa.select(_C.c.filter).where(_C.c.id == config_id, _C.c.organisation_id == organisation_id)
    ).scalar()
    return str(value or "")


def filter_input(
    engine: Engine, organisation_id: str, delivery_id: int
) -> tuple[str, StoredEvent] | None:
    """(its configuration's filter now, the delivery's event); None if absent or another's."""
    with db.read_transaction(engine) as conn:
        row = conn.execute(
            sa.select(
                _D.c.id, _E.c.event_id, _E.c.event_type, _E.c.occurred_at, _E.c.payload, _C.c.filter
            )
            .join(_E, _E.c.pk == _D.c.event_pk)
            .join(_C, _C.c.id == _D.c.config_id)
            .where(_D.c.id == delivery_id, _D.c.organisation_id == organisation_id)
        ).first()
    if row is None:
        return None
    event = StoredEvent(row.id, row.event_id, row.event_type, row.occurred_at, row.payload)
    return str(row.filter or ""), event


def range_filter_input(
    engine: Engine,
    organisation_id: str,
    config_id: str,
    statuses: Sequence[str],
    since: datetime,
    until: datetime,
    *,
    limit: int,
) -> tuple[str, list[StoredEvent]]:
    """The configuration's filter now and, when it has one, the events of the range's
    deliveries (at most ``limit`` + 1, the replay's cap)."""
    where = _range_clause(organisation_id, config_id, statuses, since, until)
    with db.read_transaction(engine) as conn:
        expression = config_filter(conn, organisation_id, config_id)
        if not expression:
            return "", []
        return expression, _stored(conn, sa.select(_D.c.id).where(*where).limit(limit + 1))


@dataclass(frozen=True, slots=True)
class ReplayResult:
    config_enabled: bool | None  # None: no such configuration (nothing written)
    matched: int  # ended deliveries in range, counted up to limit + 1
    replayed: int  # moved back to pending (0 unless enabled and matched <= limit)


def replay_range(
    engine: Engine,
    organisation_id: str,
    config_id: str,
    statuses: Sequence[str],
    since: datetime,
    until: datetime,
    now: datetime,
    *,
    limit: int,
    only: Sequence[int] | None = None,
) -> ReplayResult:
    """Move the configuration's ended deliveries with ``statuses``, created in
    [since, until), back to pending and due now — unless more than ``limit``
    match (then nothing is written and ``matched`` is ``limit + 1``).
    ``only``: of those, only these deliveries (the ones its filter accepts now).

    On an ordered configuration the replayed deliveries with an ordering key
    go back into their keys' queues (held; each idle key's lowest sequence
    number is promoted at once): replayed events keep their sequence numbers
    and, per key, are delivered one at a time in sequence order."""
    where = _range_clause(organisation_id, config_id, statuses, since, until)
    with db.write_transaction(engine) as conn:
        flags = _config_flags(conn, organisation_id, config_id)
        if flags is None or not flags[0]:
            return ReplayResult(None if flags is None else False, 0, 0)
        ordered = flags[1]
        capped = sa.select(_D.c.id).where(*where).limit(limit + 1).subquery()
        matched = int(conn.execute(sa.select(sa.func.count()).select_from(capped)).scalar_one())
        if matched == 0 or matched > limit:
            return ReplayResult(True, matched, 0)
        due: Any = PARKED_UNTIL if _waits(conn, config_id) else now  # waits for verification
        first = due
        if ordered:
            due = sa.case(
                (_D.c.ordering_key.is_not(None), sa.literal(HELD_UNTIL, UTCDateTime())),
                else_=sa.literal(first, UTCDateTime()),
            )
        values = {
            "status": DeliveryStatus.PENDING,
            "next_attempt_at": due,
            "claim_token": None,
            "updated_at": now,
        }
        chunks: list[list[sa.ColumnElement[bool]]] = [[]]
        if only is not None:
            ids = list(only)
            chunks = [[_D.c.id.in_(ids[i : i + 500])] for i in range(0, len(ids), 500)]
        keys: list[str] = []
        replayed = 0
        for extra in chunks:  # bounded IN lists
            rows = conn.execute(
                sa.update(_D).where(*where, *extra).values(**values).returning(_D.c.ordering_key)
            ).all()
            replayed += len(rows)
            keys.extend(r[0] for r in rows if r[0])
        if ordered and keys:
            ordering.promote(
                conn, [(organisation_id, config_id, k) for k in keys], now=now, due=first
            )
        if replayed:
            notify_workers(conn)
    return ReplayResult(True, matched, int(replayed))

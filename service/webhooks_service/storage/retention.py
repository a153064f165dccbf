"""Pruning old events together with their deliveries and delivery log.

The rule: an event and everything about it (its deliveries and their
attempts) goes once the event was stored before the cutoff and none of its
deliveries is still ``pending``. A pending delivery keeps its event however
old it is, so pruning never takes work away from the queue, and the log of an
event is never left half-deleted.

Pruning runs in batches, each its own short write transaction, so delivery
workers (which write in the same tables) wait at most one batch. A batch:

1. picks up to ``batch_size`` old events with no pending delivery, oldest
   first (an index range scan on ``events.created_at``);
2. on PostgreSQL, locks those events' deliveries and re-reads their status:
   a delivery set back to ``pending`` (a retry or replay) after step 1 keeps
   its event; with the rows locked nobody can do so until the batch commits;
3. deletes attempts, then deliveries, then events of the remaining pks —
   explicitly: the attempt log has no foreign keys (issue 25), and its
   attempts are found by organisation and event id (``ix_attempts_org_event``,
   one statement per organisation of the batch), not by an index of its own.

Successive batches resume at the ``created_at`` of the last event picked, so
old events that must stay (pending) are not scanned again and again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from webhooks_service.domain import DeliveryStatus
from webhooks_service.storage import db
from webhooks_service.storage.models import Delivery, DeliveryAttempt, Event

events = cast(sa.Table, Event.__table__)
deliveries = cast(sa.Table, Delivery.__table__)
attempts = cast(sa.Table, DeliveryAttempt.__table__)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows of each table were (or, in a dry run, would be) deleted."""

    events: int = 0
    deliveries: int = 0
    attempts: int = 0

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.events + other.events,
            self.deliveries + other.deliveries,
            self.attempts + other.attempts,
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch's outcome: its counts, how many events it picked, and where
    the next batch resumes (None when nothing was picked)."""

    result: PruneResult
    picked: int
    resume_from: datetime | None


def _no_pending_delivery() -> sa.ColumnElement[bool]:
    pending = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.event_pk == events.c.pk, deliveries.c.status == DeliveryStatus.PENDING)
        .exists()
    )
    return ~pending


def _prunable(cutoff: datetime, resume_from: datetime | None) -> sa.Select[Any]:
    query = sa.select(
        events.c.pk, events.c.created_at, events.c.organisation_id, events.c.event_id
    ).where(events.c.created_at < cutoff, _no_pending_delivery())
    if resume_from is not None:
        query = query.where(events.c.created_at >= resume_from)
    return query


def prune_batch(
    engine: Engine, cutoff: datetime, batch_size: int, *, resume_from: datetime | None = None
) -> Batch:
    """Delete up to ``batch_size`` prunable events (with their deliveries and
    attempts) in one write transaction. The caller loops until ``picked`` is
    smaller than ``batch_size``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with db.write_transaction(engine) as conn:
        rows = conn.execute(
            _prunable(cutoff, resume_from).order_by(events.c.created_at).limit(batch_size)
        ).all()
        if not rows:
            return Batch(PruneResult(), 0, None)
        pks = [int(r.pk) for r in rows]
        resume = max(r.created_at for r in rows)
        if not db.is_sqlite(engine):
            # On SQLite BEGIN IMMEDIATE already excludes every other writer.
            locked = conn.execute(
                sa.select(deliveries.c.event_pk, deliveries.c.status)
                .where(deliveries.c.event_pk.in_(pks))
                .order_by(deliveries.c.id)
                .with_for_update()
            ).all()
            keep = {int(r.event_pk) for r in locked if r.status == DeliveryStatus.PENDING}
            pks = [pk for pk in pks if pk not in keep]
        if not pks:
            return Batch(PruneResult(), len(rows), resume)
        kept = set(pks)
        by_org: dict[str, list[str]] = {}
        for r in rows:
            if r.pk in kept:
                by_org.setdefault(r.organisation_id, []).append(r.event_id)
        n_attempts = sum(
            conn.execute(
                sa.delete(attempts).where(
                    attempts.c.organisation_id == org,
                    attempts.c.event_id.in_(event_ids),
                    attempts.c.event_pk.in_(pks),
                )
            ).rowcount
            for org, event_ids in by_org.items()
        )
        n_deliveries = conn.execute(
            sa.delete(deliveries).where(deliveries.c.event_pk.in_(pks))
        ).rowcount
        n_events = conn.execute(sa.delete(events).where(events.c.pk.in_(pks))).rowcount
    return Batch(PruneResult(n_events, n_deliveries, n_attempts), len(rows), resume)


def prune_before(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = 1000,
    pause: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PruneResult:
    """Prune everything prunable before ``cutoff``, batch by batch, pausing
    ``pause`` seconds between batches; the total counts."""
    total = PruneResult()
    resume_from: datetime | None = None
    while True:
        batch = prune_batch(engine, cutoff, batch_size, resume_from=resume_from)
        total += batch.result
        if batch.picked < batch_size:
            return total
        resume_from = batch.resume_from
        if pause > 0:
            sleep(pause)


def count_prunable(engine: Engine, cutoff: datetime) -> PruneResult:
    """What ``prune_before(engine, cutoff)`` would delete now (for a dry run)."""
    old = _prunable(cutoff, None).subquery()
    with db.read_transaction(engine) as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(old)).scalar_one()
        n_deliveries = conn.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(deliveries.c.event_pk.in_(sa.select(old.c.pk)))
        ).scalar_one()
        n_attempts = conn.execute(
            sa.select(sa.func.count())
            .select_from(attempts)
            .join(
                old,
                sa.and_(
                    attempts.c.organisation_id == old.c.organisation_id,
                    attempts.c.event_id == old.c.event_id,
                    attempts.c.event_pk == old.c.pk,
                ),
            )
        ).scalar_one()
    return PruneResult(int(n_events), int(n_deliveries), int(n_attempts))

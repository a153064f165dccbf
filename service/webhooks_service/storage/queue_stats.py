"""Queue gauges: how much is pending, how much is due, how late the oldest is.

One read per call, answered from the claim index (``ix_deliveries_due``: a
partial index on pending rows by ``next_attempt_at``), so metrics can poll it
every few seconds without touching the hot path. Claimed deliveries are
pending with ``next_attempt_at`` at their lease end, so they count as pending
but not as due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from webhooks_service.domain import DeliveryStatus
from webhooks_service.storage import db
from webhooks_service.storage.models import Delivery

_D = cast(sa.Table, Delivery.__table__)


@dataclass(frozen=True)
class QueueStats:
    pending: int  # deliveries not finished yet (due, waiting for a retry, or claimed)
    due: int  # pending and due now: waiting for a worker
    oldest_due_age_seconds: float  # how long the oldest due delivery has waited (0: none)


def queue_stats(engine: Engine, now: datetime) -> QueueStats:
    pending = _D.c.status == DeliveryStatus.PENDING
    due = sa.and_(pending, _D.c.next_attempt_at <= now)
    with db.read_transaction(engine) as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(_D).where(pending)).scalar()
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(_D.c.next_attempt_at)).where(due)
        ).one()
    oldest: datetime | None = row[1]
    if oldest is not None and oldest.tzinfo is None:  # defensive: naive means UTC here
        oldest = oldest.replace(tzinfo=UTC)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueStats(pending=int(total or 0), due=int(row[0] or 0), oldest_due_age_seconds=age)

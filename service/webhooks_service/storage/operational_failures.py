"""An endpoint's final failures not reported yet (``operational_failures``), coalesced.

Per endpoint, the first final failure of a window is reported at once
(``webhook.delivery_failed``); the others are counted into the next report,
which :func:`coalesce_failures` makes when a later failure comes after the
window, or :func:`due_reports` (the health sweep) when the window ends
without one. The rule is core/operational.py's; the reports become events
through storage/operational.py's :func:`insert_operational`, in the same
transaction. The rows are locked in key order
(:func:`~webhooks_service.storage.dialect.locked_in_key_order`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.storage import dialect
from webhooks_service.storage.models import OperationalFailure

__all__ = ["Failure", "Report", "coalesce_failures", "due_reports"]

_F = cast(sa.Table, OperationalFailure.__table__)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a failure row never reported


@dataclass(frozen=True, slots=True)
class Failure:
    """One final failure to report: ``data`` is its own event data (JSON)."""

    config_id: str
    organisation_id: str
    delivery_id: int
    failed_at: datetime
    data: str


@dataclass(frozen=True, slots=True)
class Report:
    """Failures of one endpoint reported together; ``data`` is the newest's."""

    config_id: str
    organisation_id: str
    count: int
    first_delivery_id: int
    first_failed_at: datetime
    last_failed_at: datetime
    data: str


def coalesce_failures(
    conn: sa.Connection, failures: Sequence[Failure], *, now: datetime, window: float
) -> tuple[list[Report], dict[str, int]]:
    """The reports due for ``failures`` and, per organisation, how many
    failures were coalesced (counted into another report instead of their own).

    Per endpoint: when its last report is at least ``window`` seconds old, one
    report now (every failure not reported yet, these included); otherwise they
    are added to what the next report will carry.
    """
    groups: dict[str, list[Failure]] = {}
    for f in failures:
        groups.setdefault(f.config_id, []).append(f)
    if not groups:
        return [], {}
    ids = sorted(groups)
    conn.execute(
        dialect.insert(conn, _F)
        .values(
            [
                {"config_id": c, "organisation_id": groups[c][0].organisation_id}
                | {"reported_at": _NEVER, "pending": 0}
                for c in ids
            ]
        )
        .on_conflict_do_nothing(index_elements=["config_id"])
    )
    rows = {r.config_id: r for r in dialect.locked_in_key_order(conn, _F, _F.c.config_id, ids)}
    due = now - timedelta(seconds=window)
    reports: list[Report] = []
    coalesced: dict[str, int] = {}
    for config_id in ids:
        row = rows.get(config_id)
        if row is None:  # the configuration is gone (deleted for good): nothing to report
            continue
        items = sorted(groups[config_id], key=lambda f: (f.failed_at, f.delivery_id))
        org, last = row.organisation_id, items[-1]
        if row.pending:
            first_id, first_at = row.first_delivery_id, row.first_failed_at
        else:
            first_id, first_at = items[0].delivery_id, items[0].failed_at
        if row.reported_at <= due:
            count = row.pending + len(items)
            reports.append(
                Report(config_id, org, count, first_id, first_at, last.failed_at, last.data)
            )
            values: dict[str, Any] = {"reported_at": now, "pending": 0}
            values |= {"first_delivery_id": None, "first_failed_at": None}
            values |= {"last_data": None, "last_failed_at": None}
            folded = len(items) - 1
        else:
            values = {"pending": row.pending + len(items)}
            values |= {"first_delivery_id": first_id, "first_failed_at": first_at}
            values |= {"last_data": last.data, "last_failed_at": last.failed_at}
            folded = len(items)
        conn.execute(sa.update(_F).where(_F.c.config_id == config_id).values(**values))
        if folded:
            coalesced[org] = coalesced.get(org, 0) + folded
    return reports, coalesced


def due_reports(conn: sa.Connection, *, now: datetime, window: float) -> list[Report]:
    """Reports of the failures still unreported when their window ended (the
    health sweep calls this), their rows reset."""
    query = (
        sa.select(_F)
        .where(
            _F.c.last_failed_at.is_not(None),  # indexed: set only while some are pending
            _F.c.pending > 0,
            _F.c.reported_at <= now - timedelta(seconds=window),
        )
        .order_by(_F.c.config_id)
        .limit(1000)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    reports = [
        Report(
            r.config_id,
            r.organisation_id,
            r.pending,
            r.first_delivery_id,
            r.first_failed_at,
            r.last_failed_at,
            r.last_data,
        )
        for r in conn.execute(query)
    ]
    if reports:
        conn.execute(
            sa.update(_F)
            .where(_F.c.config_id.in_([r.config_id for r in reports]))
            .values(
                reported_at=now,
                pending=0,
                first_delivery_id=None,
                first_failed_at=None,
                last_data=None,
                last_failed_at=None,
            )
        )
    return reports

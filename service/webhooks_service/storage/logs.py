"""The delivery log query: keyset pages of ``delivery_attempts``, newest first.

One query, :func:`bounded_page` (:func:`list_page`: the same without a
budget). It reads at most ``limit`` attempt rows through one of the ``ix_attempts_org*`` indexes
(``organisation_id [, filter column], id``) backwards from the cursor; only
those rows are then joined to ``events`` for the *size* of the request
body. Putting the LIMIT inside a subquery keeps both planners from driving
the join from ``events``, so a page costs the same on the first page and a
million rows deep.

Pages are bounded in bytes as well as rows: the first query returns the
sizes of the bodies, not the bodies; the page is cut where its entries reach
``max_bytes`` (at least one entry), and only then are the bodies of the
entries kept fetched (``full``), by primary key. So a page of 500 attempts of
250 KB events reads a few MiB, not 125 MB, whatever ``limit`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from webhooks_service.storage.models import DeliveryAttempt, Event

_A = cast(sa.Table, DeliveryAttempt.__table__)
_E = cast(sa.Table, Event.__table__)


@dataclass(frozen=True)
class LogFilters:
    config_id: str = ""
    event_id: str = ""
    event_type: str = ""
    outcome: str = ""  # a domain.Outcome value, or "" (any)

    def key(self) -> tuple[str, str, str, str]:
        return (self.config_id, self.event_id, self.event_type, self.outcome)


ENTRY_OVERHEAD_BYTES = 200  # ids, timestamps, numbers and field tags of one entry


@dataclass(frozen=True)
class LogRow:
    id: int
    delivery_id: int
    event_id: str
    event_type: str
    config_id: str
    attempt: int
    url: str
    request_body: str
    response_status_code: int
    response_body: str
    response_body_truncated: bool
    error: str
    duration_ms: int
    outcome: str
    attempted_at: datetime
    next_attempt_at: datetime | None
    ordering_key: str | None = None  # the event's (issue 22)
    sequence: int | None = None


def _octets(column: sa.ColumnElement[str], dialect: str) -> sa.ColumnElement[int]:
    if dialect == "postgresql":
        return sa.func.octet_length(column)
    return sa.func.length(sa.cast(column, sa.LargeBinary))


def page_query(
    organisation_id: str,
    filters: LogFilters,
    *,
    before_id: int | None,
    limit: int,
    dialect: str = "sqlite",
) -> sa.Select[tuple[object, ...]]:
    """The page's SELECT for ``dialect`` ("sqlite" or "postgresql"; exposed for
    the plan checks in tests and the benchmark)."""
    if dialect == "postgresql":
        # ``= ANY(ARRAY[org])`` instead of ``= org``: PostgreSQL treats an
        # equality with a constant as making ``organisation_id`` constant and
        # drops it from the ORDER BY below, after which walking the primary
        # key backwards with a filter satisfies "id DESC" too. The planner
        # prefers that path for a big organisation (heap order is id order),
        # and it degrades to a scan of every newer row of other organisations
        # when this organisation's rows are old (measured: 120+ ms at 600k
        # newer rows). With ANY, only the ix_attempts_org* indexes deliver the
        # order without a sort, and the index still seeks to (org, id < after).
        org_clause = _A.c.organisation_id == sa.any_(postgresql.array([organisation_id]))
    else:
        org_clause = _A.c.organisation_id == organisation_id
    inner = sa.select(_A).where(org_clause)
    if filters.config_id:
        inner = inner.where(_A.c.config_id == filters.config_id)
    if filters.event_id:
        inner = inner.where(_A.c.event_id == filters.event_id)
    if filters.event_type:
        inner = inner.where(_A.c.event_type == filters.event_type)
    if filters.outcome:
        inner = inner.where(_A.c.outcome == filters.outcome)
    if before_id is not None:
        inner = inner.where(_A.c.id < before_id)
    # With one organisation (and equality filters) this is the order of
    # ``id DESC``, spelled as the key of the index of the most selective
    # filter, so that the planners walk that index and never sort.
    order = [_A.c.organisation_id.desc()]
    for value, column in (
        (filters.event_id, _A.c.event_id),
        (filters.config_id, _A.c.config_id),
        (filters.event_type, _A.c.event_type),
        (filters.outcome, _A.c.outcome),
    ):
        if value:
            order.append(column.desc())
            break
    page = inner.order_by(*order, _A.c.id.desc()).limit(limit).subquery("page")
    columns = [c for c in page.c if c.name != "response_body"]
    return (
        sa.select(
            *columns,
            _octets(page.c.response_body, dialect).label("response_body_bytes"),
            _octets(_E.c.payload, dialect).label("payload_bytes"),
            _E.c.ordering_key,
            _E.c.sequence,
        )
        .select_from(page.join(_E, _E.c.pk == page.c.event_pk))
        .order_by(page.c.id.desc())
    )


def _bodies(conn: sa.Connection, ids: list[int]) -> dict[int, tuple[str, str]]:
    """attempt id -> (request body, response body), by primary key."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(_A.c.id, _E.c.payload, _A.c.response_body)
        .select_from(_A.join(_E, _E.c.pk == _A.c.event_pk))
        .where(_A.c.id.in_(ids))
    )
    return {r.id: (r.payload, r.response_body) for r in rows}


def list_page(
    conn: sa.Connection,
    organisation_id: str,
    filters: LogFilters,
    *,
    before_id: int | None,
    limit: int,
) -> list[LogRow]:
    """Up to ``limit`` attempts of the organisation with id < ``before_id``, newest
    first, with their bodies (no byte budget: for small ``limit`` s)."""
    rows, _ = bounded_page(conn, organisation_id, filters, before_id=before_id, limit=limit)
    return rows


def bounded_page(
    conn: sa.Connection,
    organisation_id: str,
    filters: LogFilters,
    *,
    before_id: int | None,
    limit: int,
    max_bytes: int | None = None,
    full: bool = True,
) -> tuple[list[LogRow], bool]:
    """Attempts of the organisation with id < ``before_id``, newest first: at
    most ``limit``, and no more than fit in ``max_bytes`` (but at least one);
    and whether the byte budget cut the page short. ``full``: with the
    request and response bodies (else they are empty)."""
    query = page_query(
        organisation_id, filters, before_id=before_id, limit=limit, dialect=conn.dialect.name
    )
    rows = list(conn.execute(query))
    cut = False
    if max_bytes is not None:
        used = 0
        for n, r in enumerate(rows):
            size = ENTRY_OVERHEAD_BYTES + len(r.url) + len(r.error) + len(r.event_id)
            if full:
                size += int(r.payload_bytes or 0) + int(r.response_body_bytes or 0)
            if n > 0 and used + size > max_bytes:
                rows, cut = rows[:n], True
                break
            used += size
    bodies = _bodies(conn, [r.id for r in rows]) if full else {}
    return [
        LogRow(
            id=r.id,
            delivery_id=r.delivery_id,
            event_id=r.event_id,
            event_type=r.event_type,
            config_id=r.config_id,
            attempt=r.attempt,
            url=r.url,
            request_body=bodies.get(r.id, ("", ""))[0],
            response_status_code=r.response_status_code,
            response_body=bodies.get(r.id, ("", ""))[1],
            response_body_truncated=bool(r.response_body_truncated),
            error=r.error,
            duration_ms=r.duration_ms,
            outcome=r.outcome,
            attempted_at=r.attempted_at,
            next_attempt_at=r.next_attempt_at,
            ordering_key=r.ordering_key,
            sequence=r.sequence,
        )
        for r in rows
    ], cut

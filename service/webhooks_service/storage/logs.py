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

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from webhooks_service.domain import StatusClass
from webhooks_service.storage.models import DeliveryAttempt, Event, WebhookConfig

_A = cast(sa.Table, DeliveryAttempt.__table__)
_E = cast(sa.Table, Event.__table__)
_C = cast(sa.Table, WebhookConfig.__table__)

# The expression of ix_attempts_org_status_class (integer division on both databases).
status_hundreds = _A.c.response_status_code.op("/")(100)

Header = tuple[str, str]


@dataclass(frozen=True)
class LogFilters:
    config_id: str = ""
    event_id: str = ""
    # An exact type, or (before core resolves it) a wildcard as the caller gave it.
    event_type: str = ""
    outcome: str = ""  # a domain.Outcome value, or "" (any)
    status_class: str = ""  # a domain.StatusClass value, or "" (any)
    since: datetime | None = None  # attempted_at >= since
    until: datetime | None = None  # attempted_at < until
    # Any of these types (what core resolves a category wildcard to); wins over event_type.
    event_types: tuple[str, ...] = ()

    def key(self) -> tuple[str, ...]:
        """What a page token is bound to (the filters as the caller gave them). The
        filters of issue 20 are appended only when set, so older tokens stay valid."""
        base = (self.config_id, self.event_id, self.event_type, self.outcome)
        extra = (
            self.status_class,
            self.since.isoformat() if self.since else "",
            self.until.isoformat() if self.until else "",
        )
        return base + extra if any(extra) else base

    @property
    def by_time(self) -> bool:
        """Pages walk ``ix_attempts_org_time`` (newest attempt time first), the
        other filters checked on the rows of the range, whenever a time range is
        given, except with ``event_id`` (its index finds a handful of rows). So a
        page costs at most the rows of the range asked for: walking another
        filter's index in id order instead would read every row of that filter
        outside the range (measured: 107 ms for a configuration's last minute
        at 200k rows, docs/decisions.md)."""
        return (self.since is not None or self.until is not None) and not self.event_id


# The keyset position of a page: an attempt id, or (attempted_at, id) when by_time.
Position = int | tuple[datetime, int]


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
    request_headers: tuple[Header, ...] = ()
    response_headers: tuple[Header, ...] = ()
    response_headers_truncated: bool = False
    endpoint_deleted: bool = False


def headers_from_json(stored: str | None) -> tuple[Header, ...]:
    """A stored header list (JSON ``[[name, value], ...]``; "" when none)."""
    if not stored:
        return ()
    return tuple((str(n), str(v)) for n, v in json.loads(stored))


def _octets(column: sa.ColumnElement[str], dialect: str) -> sa.ColumnElement[int]:
    if dialect == "postgresql":
        return sa.func.octet_length(column)
    return sa.func.length(sa.cast(column, sa.LargeBinary))


def _filtered(
    query: sa.Select[Any], filters: LogFilters, before: Position | None
) -> sa.Select[Any]:
    if filters.config_id:
        query = query.where(_A.c.config_id == filters.config_id)
    if filters.event_id:
        query = query.where(_A.c.event_id == filters.event_id)
    if filters.event_type and not filters.event_types:
        query = query.where(_A.c.event_type == filters.event_type)
    if filters.outcome:
        query = query.where(_A.c.outcome == filters.outcome)
    if filters.status_class:
        query = query.where(status_hundreds == StatusClass(filters.status_class).hundreds)
    if filters.since is not None:
        query = query.where(_A.c.attempted_at >= filters.since)
    if filters.until is not None and not isinstance(before, tuple):
        query = query.where(_A.c.attempted_at < filters.until)
    if isinstance(before, tuple):
        # The cursor (a row of this very range, so before until) is the upper bound,
        # spelled plainly too: SQLite seeks the index with one plain bound only.
        query = query.where(
            _A.c.attempted_at <= before[0],
            sa.tuple_(_A.c.attempted_at, _A.c.id) < sa.tuple_(*before),
        )
    elif before is not None:
        query = query.where(_A.c.id < before)
    return query


def page_query(
    organisation_id: str,
    filters: LogFilters,
    *,
    before_id: Position | None,
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
    inner = _filtered(sa.select(_A).where(org_clause), filters, before_id)
    # With one organisation (and equality filters) this is the order of
    # ``id DESC``, spelled as the key of the index of the most selective
    # filter, so that the planners walk that index and never sort.
    order: list[sa.ColumnElement[Any]] = [_A.c.organisation_id.desc()]
    if filters.by_time:  # ix_attempts_org_time; the other filters are checked per row
        order.append(_A.c.attempted_at.desc())
    else:
        for value, column in (
            (filters.event_id, _A.c.event_id),
            (filters.config_id, _A.c.config_id),
            (filters.event_type or filters.event_types, _A.c.event_type),
            # An equality on the class makes it constant: SQLite walks the expression
            # index in id order only when the ORDER BY leaves the expression out.
            (filters.status_class, None),
            (filters.outcome, _A.c.outcome),
        ):
            if value:
                if column is not None:
                    order.append(column.desc())
                break
    order.append(_A.c.id.desc())
    page: sa.Subquery
    legs_walk = not (filters.event_id or filters.config_id or filters.by_time)
    if len(filters.event_types) > 1 and legs_walk:
        # A wildcard: one leg per type, each walking ix_attempts_org_type in id
        # order for at most ``limit`` rows, merged: k x limit rows, never a sort
        # of every attempt of the category.
        legs = [
            sa.select(inner.where(_A.c.event_type == t).order_by(*order).limit(limit).subquery())
            for t in filters.event_types
        ]
        merged = sa.union_all(*legs).subquery("merged")
        page = sa.select(merged).order_by(merged.c.id.desc()).limit(limit).subquery("page")
    else:
        if filters.event_types:
            inner = inner.where(_A.c.event_type.in_(filters.event_types))
        page = inner.order_by(*order).limit(limit).subquery("page")
    hidden = {"response_body", "request_headers", "response_headers"}
    columns = [c for c in page.c if c.name not in hidden]
    outer_order = [page.c.attempted_at.desc()] if filters.by_time else []
    return (
        sa.select(
            *columns,
            _octets(page.c.response_body, dialect).label("response_body_bytes"),
            _octets(page.c.request_headers, dialect).label("request_headers_bytes"),
            _octets(page.c.response_headers, dialect).label("response_headers_bytes"),
            _octets(_E.c.payload, dialect).label("payload_bytes"),
            _E.c.ordering_key,
            _E.c.sequence,
            _C.c.deleted_at.label("endpoint_deleted_at"),
        )
        .select_from(
            page.join(_E, _E.c.pk == page.c.event_pk).outerjoin(_C, _C.c.id == page.c.config_id)
        )
        .order_by(*outer_order, page.c.id.desc())
    )


@dataclass(frozen=True)
class _Full:
    request_body: str = ""
    response_body: str = ""
    request_headers: tuple[Header, ...] = ()
    response_headers: tuple[Header, ...] = ()


_NOT_FULL = _Full()


def _bodies(conn: sa.Connection, ids: list[int]) -> dict[int, _Full]:
    """attempt id -> its bodies and headers, by primary key."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(
            _A.c.id, _E.c.payload, _A.c.response_body, _A.c.request_headers, _A.c.response_headers
        )
        .select_from(_A.join(_E, _E.c.pk == _A.c.event_pk))
        .where(_A.c.id.in_(ids))
    )
    return {
        r.id: _Full(
            r.payload,
            r.response_body,
            headers_from_json(r.request_headers),
            headers_from_json(r.response_headers),
        )
        for r in rows
    }


def list_page(
    conn: sa.Connection,
    organisation_id: str,
    filters: LogFilters,
    *,
    before_id: Position | None,
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
    before_id: Position | None,
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
                size += int(r.request_headers_bytes or 0) + int(r.response_headers_bytes or 0)
            if n > 0 and used + size > max_bytes:
                rows, cut = rows[:n], True
                break
            used += size
    bodies = _bodies(conn, [r.id for r in rows]) if full else {}
    return [_row(r, bodies.get(r.id, _NOT_FULL)) for r in rows], cut


def _row(r: Any, full: _Full) -> LogRow:
    return LogRow(
        id=r.id,
        delivery_id=r.delivery_id,
        event_id=r.event_id,
        event_type=r.event_type,
        config_id=r.config_id,
        attempt=r.attempt,
        url=r.url,
        request_body=full.request_body,
        response_status_code=r.response_status_code,
        response_body=full.response_body,
        response_body_truncated=bool(r.response_body_truncated),
        error=r.error,
        duration_ms=r.duration_ms,
        outcome=r.outcome,
        attempted_at=r.attempted_at,
        next_attempt_at=r.next_attempt_at,
        request_headers=full.request_headers,
        response_headers=full.response_headers,
        response_headers_truncated=bool(r.response_headers_truncated),
        endpoint_deleted=r.endpoint_deleted_at is not None,
        ordering_key=r.ordering_key,
        sequence=r.sequence,
    )


def event_attempts(
    conn: sa.Connection, organisation_id: str, event_id: str, *, per_delivery: int
) -> list[LogRow]:
    """The newest ``per_delivery`` attempts of each delivery of one event, newest
    first, without bodies or headers (GetEvent): one read of
    ``ix_attempts_org_event``, numbered per delivery by a window function."""
    numbered = (
        sa.select(
            _A,
            sa.func.row_number()
            .over(partition_by=_A.c.delivery_id, order_by=_A.c.id.desc())
            .label("n"),
        )
        .where(_A.c.organisation_id == organisation_id, _A.c.event_id == event_id)
        .subquery("numbered")
    )
    query = (
        sa.select(
            numbered,
            _C.c.deleted_at.label("endpoint_deleted_at"),
            _E.c.ordering_key,
            _E.c.sequence,
        )
        .select_from(
            numbered.outerjoin(_C, _C.c.id == numbered.c.config_id).join(
                _E, _E.c.pk == numbered.c.event_pk
            )
        )
        .where(numbered.c.n <= per_delivery)
        .order_by(numbered.c.id.desc())
    )
    return [_row(r, _NOT_FULL) for r in conn.execute(query)]

"""Storing published events and their deliveries.

``publish_transaction`` opens THE publish transaction and gives the caller
(``core/publishing.py``, and the test event in ``core/ping.py``) a
``PublishWriter`` with two steps, plain data in and out, and no callbacks:

1. ``targets`` reads the organisations' enabled configurations (NotFound for
   a missing organisation); ``target`` reads one configuration.
2. ``insert`` stores the events (idempotent on ``(organisation_id,
   event_id)`` through ``ON CONFLICT DO NOTHING``, so concurrent publishers of
   one id agree on who stored it) and, for each event actually stored, the
   deliveries the caller planned: each one either pending and due now, or
   already claimed under the caller's ``Lease`` (the hand-off: slots the
   in-process worker reserved, so no claim query is needed). It returns the
   claimed ones as ``ClaimedDelivery`` records, to start after the commit.

Which configuration gets a delivery (event type matching) and which are
handed over (the worker's reservation) is the caller's decision, made
between the two steps. On PostgreSQL ``NOTIFY webhooks_deliveries`` is sent
only if some delivery was left unclaimed, so that workers in other
processes wake up when the transaction commits.

All of it is atomic: an event is never visible without its deliveries. On
SQLite that is one write transaction; on PostgreSQL, where every round trip
counts in publish latency, the write is one statement run in autocommit mode
(after reading the configurations), so that psycopg sends no BEGIN and no
COMMIT of their own: three round trips (pool ping, read, write). Keyed
events (storage/ordering.py) add a read of the duplicates, and their write is
a transaction: BEGIN, the numbering upsert that locks the keys, the insert and
COMMIT, sent as one psycopg pipeline (``_numbered_pg``): still one round trip.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from webhooks_service.domain import (
    HELD_UNTIL,
    PARKED_UNTIL,
    ClaimedDelivery,
    Lease,
    VerificationStatus,
)
from webhooks_service.errors import NotFound
from webhooks_service.storage import db, ordering
from webhooks_service.storage.models import (
    DELIVERY_CONFIG_COLUMNS,
    Delivery,
    Event,
    Organisation,
    UTCDateTime,
    WebhookConfig,
    sqlite_time,
)

NOTIFY_CHANNEL = "webhooks_deliveries"
# Sent as the NOTIFY payload: a worker ignores notifications from its own
# process, which it has already been woken for in-process.
PROCESS_TOKEN = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _columns(*names: str) -> list[sa.ColumnClause[Any]]:
    """The result columns of a textual statement, untyped: declared so that
    SQLAlchemy builds the result's metadata once, not on every execution."""
    return [sa.column(name) for name in names]


# PostgreSQL: the whole publish in one statement (one round trip, atomic).
# Every input event carries its planned deliveries ("targets", each perhaps
# handed over); only events actually inserted (not duplicates) get theirs.
# The events come as a JSON array of arrays [organisation_id, event_id,
# event_type, occurred_at, traceparent, [[config_id, claimed, parked, held,
# head], ...], ordering_key, below] (parked: waiting for the endpoint's
# verification; held: waiting behind its key's head, storage/ordering.py;
# head: the first of the batch for its ordered key, held only if the key
# already has a pending delivery, which this statement reads: it runs after
# the upsert that locked the keys, so its snapshot sees every delivery of the
# key committed before, one round trip less under the lock; below: how far
# below its key's new last number the event's number is, read from the row
# ``ordering.PG_SEQUENCE_UPSERT`` just locked, see ``_insert_pg``) and, in the same
# order, their payloads as one text joined by the ASCII record
# separator (``PG_PAYLOAD_SEPARATOR``), which JSON text never contains raw: so
# neither Python nor the server escapes or unescapes the payloads. ``ROWS
# FROM`` reads the two side by side.
PG_PAYLOAD_SEPARATOR = "\x1e"
_SEQUENCE = ordering.sequence_of("x.value ->> 0", "x.value ->> 6", "CAST(x.value ->> 7 AS bigint)")
_BUSY = ordering.busy_probe("t.value ->> 0", "v.ordering_key")
_PG_INSERT = (
    sa.text(
        f"""
    WITH v AS (
        SELECT x.n, x.value ->> 0 AS organisation_id, x.value ->> 1 AS event_id,
               x.value ->> 2 AS event_type, CAST(x.value ->> 3 AS timestamptz) AS occurred_at,
               x.value ->> 4 AS traceparent, x.value -> 5 AS targets,
               x.value ->> 6 AS ordering_key,
               CASE WHEN x.value ->> 7 IS NOT NULL THEN {_SEQUENCE} END AS sequence,
               x.payload
        FROM ROWS FROM (
            json_array_elements(CAST(:rows AS json)),
            string_to_table(CAST(:payloads AS text), chr({ord(PG_PAYLOAD_SEPARATOR)}))
        ) WITH ORDINALITY AS x(value, payload, n)
    ), e AS (
        INSERT INTO events (organisation_id, event_id, event_type, occurred_at, payload,
                            traceparent, created_at, ordering_key, sequence)
        SELECT organisation_id, event_id, event_type, occurred_at, payload, traceparent, :now,
               ordering_key, sequence
        FROM v
        ORDER BY n
        ON CONFLICT (organisation_id, event_id) DO NOTHING
        RETURNING pk, organisation_id, event_id
    ), t AS (
        SELECT e.organisation_id, e.pk, t.value ->> 0 AS config_id, v.ordering_key,
               v.sequence, v.n, t.n AS tn, CAST(t.value ->> 1 AS boolean) AS claimed,
               CAST(t.value ->> 2 AS boolean) AS parked,
               CASE WHEN CAST(t.value ->> 3 AS boolean) THEN true
                    WHEN CAST(t.value ->> 4 AS boolean)
                    THEN {_BUSY}
                    ELSE false END AS held
        FROM e JOIN v ON v.organisation_id = e.organisation_id AND v.event_id = e.event_id
        CROSS JOIN LATERAL json_array_elements(v.targets) WITH ORDINALITY AS t(value, n)
    ), d AS (
        INSERT INTO deliveries (organisation_id, event_pk, config_id, status, attempts,
                                next_attempt_at, claim_token, created_at, updated_at,
                                ordering_key, sequence)
        SELECT organisation_id, pk, config_id, 'pending', 0,
               CASE WHEN held THEN :held WHEN claimed THEN :lease_end
                    WHEN parked THEN :parked ELSE :now END,
               CASE WHEN claimed AND NOT held THEN :claim_token END, :now, :now,
               ordering_key, sequence
        FROM t
        ORDER BY n, tn
        RETURNING id, event_pk, config_id, claim_token, next_attempt_at, sequence
    )
    -- the events stored (the others were duplicates) ...
    SELECT 'event' AS kind, pk, organisation_id, event_id, NULL AS delivery_id,
           NULL AS config_id, NULL AS sequence
    FROM e
    UNION ALL
    -- ... the deliveries handed to this process's worker ...
    SELECT 'handed', event_pk, NULL, NULL, id, config_id, sequence
    FROM d WHERE claim_token IS NOT NULL
    UNION ALL
    -- ... and a wake-up for the other processes if any delivery is left for them
    SELECT 'notified', NULL, NULL, NULL, NULL, NULL, NULL FROM (
        SELECT pg_notify('{NOTIFY_CHANNEL}', :token)
        WHERE EXISTS (SELECT 1 FROM d WHERE claim_token IS NULL AND next_attempt_at <= :now)
    ) AS notified
    """
    )
    .bindparams(
        sa.bindparam("now", type_=UTCDateTime()),
        sa.bindparam("lease_end", type_=UTCDateTime()),
        sa.bindparam("held", type_=UTCDateTime()),
        sa.bindparam("parked", type_=UTCDateTime()),
    )
    .columns(
        *_columns(
            "kind", "pk", "organisation_id", "event_id", "delivery_id", "config_id", "sequence"
        )
    )
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
    traceparent: str | None = None  # the publish span's (observability/tracing.py)
    ordering_key: str | None = None  # the publisher's (issue 22)


@dataclass(frozen=True, slots=True)
class Target:
    """A configuration as publishing sees it: where and how to send, and to what."""

    config_id: str
    organisation_id: str
    event_types: tuple[str, ...]
    url: str
    secret: str  # stored form
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    timeout_seconds: float | None
    enabled: bool
    headers: str | None = None  # custom request headers (stored form)
    ordered: bool = False  # ordered delivery per ordering key (storage/ordering.py)
    # Pending ownership verification: its deliveries are stored parked
    # (domain.PARKED_UNTIL) and never handed over, until it is verified.
    waits: bool = False
    filter: str = ""  # the payload filter (core/filters.py); "" for none


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event to store, with the deliveries it gets if it is not a duplicate:
    (target, claimed) pairs, claimed meaning "insert it under the lease"."""

    event: NewEvent
    deliveries: Sequence[tuple[Target, bool]]


@dataclass(frozen=True, slots=True)
class Inserted:
    stored: frozenset[tuple[str, str]]  # (organisation_id, event_id) of the events stored
    handed: list[ClaimedDelivery]  # the deliveries inserted claimed, to start after commit


class PublishWriter:
    """The two steps of one publish transaction (see the module docstring)."""

    def __init__(self, conn: sa.Connection, sqlite_db: bool) -> None:
        self.conn = conn
        self.sqlite = sqlite_db

    def targets(self, org_ids: Sequence[str]) -> dict[str, list[Target]]:
        """The organisations' enabled configurations (NotFound for a missing organisation)."""
        found: set[str] = set()
        by_org: dict[str, list[Target]] = {}
        for r in self.conn.execute(_TARGETS, {"org_ids": list(org_ids)}):
            found.add(r.id)
            if r.config_id is not None:
                by_org.setdefault(r.id, []).append(_target(r, r.id, True))
        missing = [o for o in org_ids if o not in found]
        if missing:
            raise NotFound(f"organisation {missing[0]} not found")
        return by_org

    def target(self, organisation_id: str, config_id: str) -> Target | None:
        """One configuration of the organisation, enabled or not; None if absent."""
        r = self.conn.execute(_TARGET, {"org_id": organisation_id, "config_id": config_id}).first()
        return None if r is None else _target(r, organisation_id, bool(r.enabled))

    def insert(
        self, planned: Sequence[PlannedEvent], *, now: datetime, lease: Lease | None
    ) -> Inserted:
        """Store the events (duplicates are skipped) and their planned deliveries.

        An event given twice here is stored once, as first given, with the
        deliveries planned for it there (``store_events`` gives each once).
        """
        if not planned:
            return Inserted(frozenset(), [])
        by_key: dict[tuple[str, str], PlannedEvent] = {}
        for p in planned:
            by_key.setdefault((p.event.organisation_id, p.event.event_id), p)
        if len(by_key) < len(planned):
            planned = list(by_key.values())
        order = self._order(planned)
        sequences: dict[int, int | None] = {}  # PostgreSQL: of the handed deliveries
        if self.sqlite:
            stored, handed = _insert_sqlite(self.conn, planned, now, lease, order)
        else:
            stored, handed = _insert_pg(self.conn, planned, now, lease, order, sequences)
        if lease is None or not handed:
            return Inserted(frozenset(stored), [])
        by_pk = {pk: key for key, pk in stored.items()}
        out: list[ClaimedDelivery] = []
        for delivery_id, pk, config_id in handed:
            key = by_pk[pk]
            plan = by_key[key]
            target = next(t for t, _ in plan.deliveries if t.config_id == config_id)
            sequence = order.sequences.get(key) if self.sqlite else sequences.get(delivery_id)
            out.append(_handed_over(delivery_id, pk, plan.event, target, lease, sequence))
        return Inserted(frozenset(stored), out)

    def _order(self, planned: Sequence[PlannedEvent]) -> _Order:
        """Sequence numbers for the keyed events and which of their deliveries to
        ordered configurations wait behind their key's head (storage/ordering.py).
        On SQLite it numbers them here; on PostgreSQL it only plans: the insert
        numbers them in its pipelined transaction (``_insert_pg``)."""
        keyed = [
            (p.event.organisation_id, p.event.event_id, p.event.ordering_key)
            for p in planned
            if p.event.ordering_key
        ]
        if not keyed:
            return _NO_ORDER
        stored = ordering.already_stored(self.conn, [(o, e) for o, e, _ in keyed])
        fresh = [k for k in keyed if (k[0], k[1]) not in stored]
        if not fresh:
            return _NO_ORDER
        counts: str | None = None
        if self.sqlite:
            sequences = ordering.sequence_events(self.conn, fresh)
        else:
            counts, below = ordering.sequence_counts(fresh)
            sequences = below
        wanted = {
            (t.config_id, p.event.ordering_key)
            for p in planned
            if p.event.ordering_key
            for t, _ in p.deliveries
            if t.ordered
        }
        # SQLite reads which keys are busy here; PostgreSQL's insert statement
        # does, for the batch's first delivery of each key (``heads``).
        busy = ordering.busy_keys(self.conn, wanted) if self.sqlite else set()
        held: set[tuple[str, str, str]] = set()
        heads: set[tuple[str, str, str]] = set()
        for p in planned:
            e = p.event
            if not e.ordering_key or (e.organisation_id, e.event_id) not in sequences:
                continue
            for t, _ in p.deliveries:
                if not t.ordered:
                    continue
                if (t.config_id, e.ordering_key) in busy:
                    held.add((e.organisation_id, e.event_id, t.config_id))
                else:
                    busy.add((t.config_id, e.ordering_key))  # this one is the key's head
                    if not self.sqlite:
                        heads.add((e.organisation_id, e.event_id, t.config_id))
        return _Order(sequences, held, heads, counts)


@dataclass(frozen=True, slots=True)
class _Order:
    """The ordering decisions of one insert: ``sequences`` by (organisation_id,
    event_id) (on PostgreSQL the offsets below the key's new last number,
    ``ordering.sequence_counts``), ``held`` as (organisation_id, event_id,
    config_id), and on PostgreSQL ``heads``, deliveries held only if their key
    is busy, which the insert statement reads, and ``counts``, the keys to
    number (``ordering.PG_SEQUENCE_UPSERT``)."""

    sequences: dict[tuple[str, str], int]
    held: set[tuple[str, str, str]]
    heads: set[tuple[str, str, str]]
    counts: str | None = None

    def is_held(self, event: NewEvent, target: Target) -> bool:
        return bool(self.held) and (event.organisation_id, event.event_id, target.config_id) in (
            self.held
        )

    def is_head(self, event: NewEvent, target: Target) -> bool:
        return bool(self.heads) and (event.organisation_id, event.event_id, target.config_id) in (
            self.heads
        )


_NO_ORDER = _Order({}, set(), set())


@contextmanager
def publish_transaction(engine: Engine) -> Iterator[PublishWriter]:
    """THE publish transaction: SQLite's write transaction, PostgreSQL autocommit
    (keyed events: a transaction ``insert`` opens and commits in one pipeline)."""
    if db.is_sqlite(engine):
        with db.write_transaction(engine) as conn:
            yield PublishWriter(conn, True)
        return
    with db.connection(engine) as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        yield PublishWriter(conn, False)


def _target(r: Any, organisation_id: str, enabled: bool) -> Target:
    return Target(
        config_id=r.config_id,
        organisation_id=organisation_id,
        event_types=tuple(r.event_types),
        url=r.url,
        secret=r.secret,
        previous_secret=r.previous_secret or None,
        previous_secret_expires_at=r.previous_secret_expires_at,
        timeout_seconds=r.timeout_seconds,
        enabled=enabled,
        headers=r.headers,
        ordered=bool(r.ordered),
        waits=r.verification_status == VerificationStatus.PENDING,
        filter=r.filter,
    )


# The statements of the hot path are built once: building them per call
# costs more Python time than SQLite takes to run them.
_TARGETS = (
    sa.select(
        organisations.c.id,
        configs.c.id.label("config_id"),
        configs.c.event_types,
        configs.c.url,
        configs.c.secret,
        configs.c.previous_secret,
        configs.c.previous_secret_expires_at,
        configs.c.timeout_seconds,
        configs.c.headers,
        configs.c.ordered,
        configs.c.verification_status,
        configs.c.filter,
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
    .where(organisations.c.id.in_(sa.bindparam("org_ids", expanding=True)))
    .order_by(configs.c.created_at, configs.c.id)
)
_TARGET = sa.select(
    configs.c.id.label("config_id"),
    configs.c.event_types,
    *(configs.c[name] for name in DELIVERY_CONFIG_COLUMNS),
    configs.c.ordered,
    configs.c.verification_status,
    configs.c.filter,
).where(
    configs.c.id == sa.bindparam("config_id"),
    configs.c.organisation_id == sa.bindparam("org_id"),
    configs.c.deleted_at.is_(None),
)
# SQLite: the write transaction holds the database lock (BEGIN IMMEDIATE), so
# nothing else inserts between reading the batch's existing events and the
# tables' highest keys and inserting: the new rows take the next keys in input
# order, given explicitly, and are inserted as plain INSERT … VALUES by
# executemany over tuples (the C loop of sqlite3). Timestamps are given in the
# storage format of SQLAlchemy's SQLite DATETIME (``models.sqlite_time``).
# (Issue 25: 12-13 us of SQLite's CPU per 1 KiB event against 20-22 for one
# INSERT … SELECT FROM json_each of the batch, whose JSON carried every payload
# escaped and was parsed again per column.)
_SQLITE_EXISTING_EVENTS = """
    SELECT organisation_id, event_id FROM events
    WHERE (organisation_id, event_id) IN
          (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))
"""
_SQLITE_LAST_EVENT = "SELECT coalesce(max(pk), 0) FROM events"
_SQLITE_LAST_DELIVERY = "SELECT coalesce(max(id), 0) FROM deliveries"
_SQLITE_INSERT_EVENTS = """
    INSERT INTO events (pk, organisation_id, event_id, event_type, occurred_at, payload,
                        traceparent, created_at, ordering_key, sequence)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQLITE_INSERT_DELIVERIES = """
    INSERT INTO deliveries (id, organisation_id, event_pk, config_id, status, attempts,
                            next_attempt_at, claim_token, created_at, updated_at,
                            ordering_key, sequence)
    VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)
"""

_SQLITE_PARKED = sqlite_time(PARKED_UNTIL)

Handed = list[tuple[int, int, str]]  # (delivery id, event pk, config id) handed over
_HELD_SQLITE = sqlite_time(HELD_UNTIL)


def _insert_sqlite(
    conn: sa.Connection,
    planned: Sequence[PlannedEvent],
    now: datetime,
    lease: Lease | None,
    order: _Order,
) -> tuple[dict[tuple[str, str], int], Handed]:
    now_text = sqlite_time(now)
    keys = [(p.event.organisation_id, p.event.event_id) for p in planned]
    existing = set(map(tuple, conn.exec_driver_sql(_SQLITE_EXISTING_EVENTS, (_json(keys),)).all()))
    pk = conn.exec_driver_sql(_SQLITE_LAST_EVENT).scalar_one()
    times: dict[datetime, str] = {now: now_text}  # most events occurred "now"
    stored: dict[tuple[str, str], int] = {}
    fresh: list[PlannedEvent] = []
    rows = []
    for key, p in zip(keys, planned, strict=True):
        if key in existing:
            continue  # a duplicate: nothing is stored for it
        e = p.event
        occurred = times.get(e.occurred_at)
        if occurred is None:
            occurred = times[e.occurred_at] = sqlite_time(e.occurred_at)
        pk += 1
        stored[key] = pk
        fresh.append(p)
        rows.append(
            (
                pk,
                e.organisation_id,
                e.event_id,
                e.event_type,
                occurred,
                e.payload,
                e.traceparent,
                now_text,
                e.ordering_key,
                order.sequences.get(key),
            )
        )
    if not rows:
        return stored, []
    conn.exec_driver_sql(_SQLITE_INSERT_EVENTS, rows)
    lease_end = sqlite_time(lease.until) if lease is not None else now_text
    token = lease.token if lease is not None else None
    delivery_id = conn.exec_driver_sql(_SQLITE_LAST_DELIVERY).scalar_one()
    handed: Handed = []
    delivery_rows = []
    for p in fresh:
        e = p.event
        event_pk = stored[(e.organisation_id, e.event_id)]
        sequence = order.sequences.get((e.organisation_id, e.event_id))
        for target, wanted in p.deliveries:
            delivery_id += 1
            held = order.is_held(e, target)
            claimed = wanted and lease is not None and not held
            if held:
                due = _HELD_SQLITE
            elif claimed:
                due = lease_end
                handed.append((delivery_id, event_pk, target.config_id))
            elif target.waits:
                due = _SQLITE_PARKED
            else:
                due = now_text
            delivery_rows.append(
                (
                    delivery_id,
                    e.organisation_id,
                    event_pk,
                    target.config_id,
                    due,
                    token if claimed else None,
                    now_text,
                    now_text,
                    e.ordering_key,
                    sequence,
                )
            )
    if delivery_rows:
        conn.exec_driver_sql(_SQLITE_INSERT_DELIVERIES, delivery_rows)
    return stored, handed


# json.dumps(rows, ensure_ascii=False, separators=(",", ":")), one encoder for all calls
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _insert_pg(
    conn: sa.Connection,
    planned: Sequence[PlannedEvent],
    now: datetime,
    lease: Lease | None,
    order: _Order,
    sequences: dict[int, int | None],
) -> tuple[dict[tuple[str, str], int], Handed]:
    times: dict[datetime, str] = {}  # most events occurred "now"
    rows = []
    for p in planned:
        e = p.event
        occurred = times.get(e.occurred_at)
        if occurred is None:
            occurred = times[e.occurred_at] = e.occurred_at.isoformat()
        rows.append(
            (
                e.organisation_id,
                e.event_id,
                e.event_type,
                occurred,
                e.traceparent,
                [
                    (t.config_id, claimed and not held, t.waits, held, order.is_head(e, t))
                    for t, claimed in p.deliveries
                    for held in (order.is_held(e, t),)
                ],
                e.ordering_key,
                order.sequences.get((e.organisation_id, e.event_id)),
            )
        )
    payloads = PG_PAYLOAD_SEPARATOR.join([p.event.payload for p in planned])
    if payloads.count(PG_PAYLOAD_SEPARATOR) != len(planned) - 1 or not payloads:
        raise ValueError("an event payload is not JSON text (empty, or a raw U+001E in it)")
    params = {
        "rows": _json(rows),
        "payloads": payloads,
        "now": now,
        "token": PROCESS_TOKEN,
        "lease_end": lease.until if lease else now,
        "claim_token": lease.token if lease else None,
        "held": HELD_UNTIL,
        "parked": PARKED_UNTIL,
    }
    if order.counts is None:
        result: Sequence[Any] = conn.execute(_PG_INSERT, params).all()
    else:
        result = _numbered_pg(conn, order.counts, params)
    stored: dict[tuple[str, str], int] = {}
    handed: Handed = []
    for r in result:
        if r[0] == "event":
            stored[(r[2], r[3])] = r[1]
        elif r[0] == "handed":
            handed.append((r[4], r[1], r[5]))
            sequences[r[4]] = r[6]
    return stored, handed


@functools.cache
def _pg_compiled(dialect: sa.Dialect) -> tuple[str, str, tuple[str, ...]]:
    """The SQL of the upsert and the insert in the driver's parameter style, and
    the insert's timestamp parameters (``UTCDateTime``: checked aware, in UTC)."""
    insert = _PG_INSERT.compile(dialect=dialect)
    upsert = ordering.PG_SEQUENCE_UPSERT.compile(dialect=dialect)
    return upsert.string, insert.string, ("now", "lease_end", "held", "parked")


def _numbered_pg(conn: sa.Connection, counts: str, params: dict[str, Any]) -> Sequence[Any]:
    """Keyed events on PostgreSQL: BEGIN, number the keys (their rows locked until
    the commit: ``ordering.PG_SEQUENCE_UPSERT``), insert, COMMIT, sent as one
    psycopg pipeline. The server runs them in order, so the insert's snapshot is
    taken after the locks (it sees every delivery of those keys committed
    before: storage/ordering.py) and it computes the numbers from the locked
    rows itself; the keys stay locked for the server's time only, with no round
    trip of this process (and its wait for the GIL) in between. A failure
    rolls back (the COMMIT of a failed transaction is a ROLLBACK)."""
    upsert_sql, insert_sql, times = _pg_compiled(conn.dialect)
    bound = dict(params)
    for name in times:
        bound[name] = bound[name].astimezone(UTC)
    driver = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    try:
        with driver.pipeline():
            driver.execute("BEGIN")
            driver.execute(upsert_sql, {"counts": counts})
            cursor = driver.execute(insert_sql, bound)
            driver.execute("COMMIT")
        return cursor.fetchall()
    except psycopg.Error as exc:
        with suppress(psycopg.Error):
            driver.execute("ROLLBACK")  # a failed BEGIN..COMMIT may leave it open
        raise sa.exc.DBAPIError.instance(insert_sql, None, exc, psycopg.Error) from exc


def _handed_over(
    delivery_id: int,
    event_pk: int,
    event: NewEvent,
    target: Target,
    lease: Lease,
    sequence: int | None,
) -> ClaimedDelivery:
    """The claim record of a delivery inserted under ``lease`` (its first attempt)."""
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
        previous_secret_expires_at=target.previous_secret_expires_at,
        timeout_seconds=target.timeout_seconds,
        enabled=True,
        lease_until=lease.until,
        headers=target.headers,
        traceparent=event.traceparent,
        ordering_key=event.ordering_key,
        sequence=sequence,
    )

"""The delivery queue: claiming due deliveries and recording their attempts.

The queue is the ``deliveries`` table. A delivery is *due* when it is
``pending`` and ``next_attempt_at <= now``. Workers take due deliveries in
batches with ``claim_due`` (the claim query), which moves ``next_attempt_at``
to the end of a lease and stamps a ``claim_token``; if the worker dies, the
lease simply runs out and the delivery is due again — nothing is lost, at
worst an attempt is repeated (at-least-once). ``finish_batch`` records a
batch of attempts and their outcomes in one transaction, but only for
deliveries whose ``claim_token`` still matches (a worker that lost its lease
does not overwrite the new owner's state). ``release`` hands unstarted
deliveries back.

Deliveries inserted already claimed at publish (the hand-off, see
``storage/events.py``) are ordinary leased rows: the same ``finish_batch``
records them.

Everything here is batched and written with SQLAlchemy Core: on PostgreSQL a
commit costs ~0.3 ms, so one commit per delivery would cap the worker at a
few thousand deliveries per second (brief §5). The records are the domain's
(``webhooks_service.domain``); this module knows nothing of who sends them.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from webhooks_service.domain import (
    ClaimedDelivery,
    DeliveryStatus,
    FinishedAttempt,
    Lease,
    new_lease,
)
from webhooks_service.storage import db, endpoint_health, endpoint_stats, ordering
from webhooks_service.storage.models import (
    ATTEMPT_COLUMNS,
    ATTEMPT_HEADER_COLUMNS,
    DELIVERY_CONFIG_COLUMNS,
    DeliveryAttempt,
    Event,
    UTCDateTime,
    WebhookConfig,
    pg_time,
    sqlite_time,
)
from webhooks_service.storage.models import Delivery as DeliveryRow
from webhooks_service.storage.replay import notify_workers

deliveries = cast(sa.Table, DeliveryRow.__table__)
attempts_table = cast(sa.Table, DeliveryAttempt.__table__)
events = cast(sa.Table, Event.__table__)
configs = cast(sa.Table, WebhookConfig.__table__)


def claim_due(
    engine: Engine,
    *,
    now: datetime,
    lease_seconds: float,
    limit: int,
    exclude_organisations: Iterable[str] = (),
    exclude_configs: Iterable[str] = (),
) -> list[ClaimedDelivery]:
    """THE claim query: take up to ``limit`` due deliveries under a fresh lease.

    One statement picks the due rows in due order and moves them to the lease
    end with a new claim token::

        WITH due AS (SELECT id FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at <= :now
                       AND organisation_id <> ALL(:orgs) AND config_id <> ALL(:configs)
                     ORDER BY next_attempt_at LIMIT :limit
                     FOR UPDATE SKIP LOCKED)          -- PostgreSQL only
        UPDATE deliveries SET next_attempt_at = :lease_end, claim_token = :token
        FROM due WHERE deliveries.id = due.id RETURNING …

    The exclusions are the caller's (the worker's fair scheduler): the
    organisations and the configurations whose destinations already have
    their share of work waiting in the worker, so that one tenant's pile of
    due deliveries cannot fill every batch.

    On PostgreSQL ``SKIP LOCKED`` lets any number of workers claim
    concurrently without waiting on each other or taking the same row, and the
    UPDATE also joins the events and configurations and RETURNs what the
    worker needs (payload, URL, secrets): one round trip per batch, committed
    with ``synchronous_commit = off`` (a claim lost in a database crash only
    means the delivery is due again). On SQLite the write transaction
    (``BEGIN IMMEDIATE``) is the single-writer path, and a second SELECT reads
    the joined rows.
    """
    if limit <= 0:
        return []
    lease = new_lease(now, lease_seconds)
    orgs, config_ids = list(exclude_organisations), list(exclude_configs)
    if db.is_sqlite(engine):
        return _sqlite_claim(engine, now, lease.until, lease.token, limit, orgs, config_ids)
    with db.write_transaction(engine) as conn:
        rows = conn.execute(
            _PG_CLAIM,
            {
                "now": now,
                "lease_end": lease.until,
                "token": lease.token,
                "limit": limit,
                "orgs": orgs,
                "configs": config_ids,
            },
        ).all()
    return [_claimed(r, lease.token, lease.until) for r in rows]


# What a claim reads (``_claimed``) on PostgreSQL, from deliveries AS d, events
# AS e and webhook_configs AS c: the claim query's and the claiming promotion's
# (storage/ordering.py) RETURNING.
# A claim record's columns (``_claimed``), once: as SQL text for the statements
# that RETURN them (``d``, ``e``, ``c`` aliases) and as columns for the SELECT.
_CLAIMED_COLUMNS = (
    (deliveries, "d", ("id", "attempts", "organisation_id", "config_id", "event_pk")),
    (events, "e", ("event_id", "event_type", "payload")),
    (configs, "c", DELIVERY_CONFIG_COLUMNS),
    (events, "e", ("traceparent",)),
    (deliveries, "d", ("ordering_key", "sequence")),
)
_CLAIMED_PG = ", ".join(f"{alias}.{n}" for _, alias, names in _CLAIMED_COLUMNS for n in names)
_CLAIMED_SELECT = tuple(table.c[n] for table, _, names in _CLAIMED_COLUMNS for n in names)
# PostgreSQL: pick, lease and read in one statement (one round trip).
_PG_CLAIM = sa.text(
    f"""
    WITH due AS (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= :now
          AND organisation_id <> ALL(CAST(:orgs AS text[]))
          AND config_id <> ALL(CAST(:configs AS text[]))
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), relaxed AS (
        -- SET LOCAL synchronous_commit = off, without a round trip of its own
        SELECT set_config('synchronous_commit', 'off', true) AS setting
    )
    UPDATE deliveries AS d
    SET next_attempt_at = :lease_end, claim_token = :token, updated_at = :now
    FROM due, relaxed, events AS e, webhook_configs AS c
    WHERE relaxed.setting = 'off' AND d.id = due.id AND e.pk = d.event_pk AND c.id = d.config_id
    RETURNING {_CLAIMED_PG}
    """
).bindparams(
    sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("lease_end", type_=UTCDateTime())
)


# ``_claimed`` unpacks a row by position, in this order (the names above, flattened;
# written out so that a change of either is caught here, at import):
# a Row's lookup by attribute name cost ~0.5 us per column, more than building the
# record (issue 25: 11.9 -> 3-4 us per claimed delivery).
_CLAIMED_ORDER = (
    "id", "attempts", "organisation_id", "config_id", "event_pk",
    "event_id", "event_type", "payload",
    "url", "secret", "previous_secret", "previous_secret_expires_at", "timeout_seconds",
    "enabled", "headers",
    "traceparent", "ordering_key", "sequence",
)  # fmt: skip
assert tuple(n for _, _, names in _CLAIMED_COLUMNS for n in names) == _CLAIMED_ORDER


def _claimed(r: Any, token: str, lease_end: datetime) -> ClaimedDelivery:
    """The claim record of a row of ``_CLAIMED_COLUMNS`` (in ``_CLAIMED_ORDER``)."""
    (
        delivery_id, attempts, organisation_id, config_id, event_pk,
        event_id, event_type, payload,
        url, secret, previous_secret, previous_secret_expires_at, timeout_seconds, enabled,
        headers,
        traceparent, ordering_key, sequence,
    ) = r  # fmt: skip
    return ClaimedDelivery(
        id=delivery_id,
        claim_token=token,
        attempt=attempts + 1,
        organisation_id=organisation_id,
        config_id=config_id,
        event_pk=event_pk,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        url=url,
        secret=secret,
        previous_secret=previous_secret or None,
        previous_secret_expires_at=previous_secret_expires_at,
        timeout_seconds=timeout_seconds,
        enabled=bool(enabled),
        lease_until=lease_end,
        headers=headers,
        traceparent=traceparent,
        ordering_key=ordering_key,
        sequence=sequence,
    )


# SQLite: the same claim in two constant statements under the write lock
# (BEGIN IMMEDIATE), compiled once. ``status = 'pending'`` is written as a
# literal, as the partial index ``ix_deliveries_due`` is declared: with the
# status as a bound parameter SQLite cannot prove the index's WHERE and read
# the claim 10x slower (0.47 vs 0.05 ms per claim over 200k ended deliveries,
# issue 25). The exclusions and the claimed ids travel as JSON arrays.
_SQLITE_CLAIM = sa.text(
    """
    UPDATE deliveries
    SET next_attempt_at = :lease_end, claim_token = :token, updated_at = :now
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= :now
          AND organisation_id NOT IN (SELECT value FROM json_each(:orgs))
          AND config_id NOT IN (SELECT value FROM json_each(:configs))
        ORDER BY next_attempt_at
        LIMIT :limit)
    RETURNING id
    """
).bindparams(
    sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("lease_end", type_=UTCDateTime())
)
_SQLITE_CLAIMED = (
    sa.select(*_CLAIMED_SELECT)
    .join(events, events.c.pk == deliveries.c.event_pk)
    .join(configs, configs.c.id == deliveries.c.config_id)
    .where(
        deliveries.c.id.in_(
            sa.select(sa.literal_column("value")).select_from(
                sa.func.json_each(sa.bindparam("ids", type_=sa.String()))
            )
        )
    )
    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
)


def _sqlite_claim(
    engine: Engine,
    now: datetime,
    lease_end: datetime,
    token: str,
    limit: int,
    orgs: list[str],
    config_ids: list[str],
) -> list[ClaimedDelivery]:
    """SQLite: the same claim under the database write lock (BEGIN IMMEDIATE)."""
    params = {
        "now": now,
        "lease_end": lease_end,
        "token": token,
        "limit": limit,
        "orgs": json.dumps(orgs),
        "configs": json.dumps(config_ids),
    }
    with db.write_transaction(engine) as conn:
        ids = list(conn.execute(_SQLITE_CLAIM, params).scalars())
        if not ids:
            return []
        return _read_claimed(conn, ids, token, lease_end)


def _read_claimed(
    conn: sa.Connection, ids: list[int], token: str, lease_end: datetime
) -> list[ClaimedDelivery]:
    """The claim records of deliveries just leased under ``token`` (SQLite)."""
    rows = conn.execute(_SQLITE_CLAIMED, {"ids": json.dumps(ids)}).all()
    return [_claimed(r, token, lease_end) for r in rows]


# A delivery cancelled while its attempt was in flight (its configuration was
# deleted, storage/config_deletion.py): the attempt is logged; if it ended the
# delivery (delivered, failed, dead) that is its state, else it stays
# cancelled and no retry follows.
_KEEP_CANCELLED_PG = (
    "CASE WHEN d.status = 'cancelled' AND v.status = 'pending' THEN d.status ELSE v.status END"
)

# What finish_batch writes of an attempt: the common columns and the headers.
_LOGGED = ATTEMPT_COLUMNS + ATTEMPT_HEADER_COLUMNS

# PostgreSQL, two round trips: one statement moves the deliveries that still
# carry our claim token (the batch's moves travel as one JSON parameter) and
# answers them, with, for ordered delivery (storage/ordering.py), whether the
# move ended the active delivery of a key on a configuration ordered now; it
# locks those keys' sequence rows (``locked``), so the promotion, a later
# statement of this transaction, sees every delivery of those keys committed
# before. Then the attempts of exactly the moved deliveries go in by COPY
# (issue 25: 15-17 vs 22-25 us of the server's CPU per attempt row, 8 vs 13 of
# ours, against INSERT ... SELECT FROM json_to_recordset; docs/decisions.md).
_PG_MOVE = sa.text(
    f"""
    WITH v AS (
        SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS x(
            delivery_id bigint, claim_token text, status text, attempt int,
            next_due timestamptz)
    ), relaxed AS (
        -- SET LOCAL synchronous_commit = off, without a round trip of its own
        SELECT set_config('synchronous_commit', 'off', true) AS setting
    ), moved AS (
        UPDATE deliveries AS d
        SET status = {_KEEP_CANCELLED_PG}, attempts = v.attempt, next_attempt_at = v.next_due,
            claim_token = NULL, updated_at = CAST(:now AS timestamptz)
        FROM v, relaxed
        WHERE relaxed.setting = 'off' AND d.id = v.delivery_id
          AND d.claim_token = v.claim_token
        RETURNING d.id, d.status, d.organisation_id, d.config_id, d.ordering_key
    ), ended AS (
        SELECT m.organisation_id, m.ordering_key
        FROM moved AS m JOIN webhook_configs AS c ON c.id = m.config_id
        WHERE m.ordering_key IS NOT NULL AND m.status <> 'pending' AND c.ordered
    ), locked AS ({ordering.lock_ended_cte("ended")})
    SELECT m.id, m.organisation_id, m.config_id, m.ordering_key,
           -- the configuration is read only for a keyed delivery that ended (CASE
           -- evaluates lazily), not for every moved row
           CASE WHEN m.ordering_key IS NOT NULL AND m.status <> 'pending'
                THEN EXISTS (SELECT 1 FROM webhook_configs AS c
                             WHERE c.id = m.config_id AND c.ordered)
                ELSE false END AS ended,
           (SELECT count(*) FROM locked) AS locked
    FROM moved AS m
    """
).columns(
    sa.column("id"),
    sa.column("organisation_id"),
    sa.column("config_id"),
    sa.column("ordering_key"),
    sa.column("ended"),
    sa.column("locked"),
)
# The attempt columns as FinishedAttempt attributes, read in one C call; the
# two timestamps are rendered per backend and go last.
_TIMES = ("attempted_at", "next_attempt_at")
_PLAIN = tuple(c for c in _LOGGED if c not in _TIMES)
_plain_values = operator.attrgetter(*_PLAIN)
_PG_COPY = f"COPY delivery_attempts ({', '.join(_PLAIN + _TIMES)}) FROM STDIN"
# The COPY's column types, named for psycopg (``Copy.set_types``: one dumper per
# column, not a lookup by Python type per value: 5.5 -> 3 us per attempt row).
_PG_DIALECT: sa.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
_PG_COPY_TYPES = [
    re.sub(r"\(.*\)", "", attempts_table.c[n].type.compile(dialect=_PG_DIALECT)).lower()
    for n in _PLAIN + _TIMES
]


# SQLite: the write transaction holds the database lock, so "find the owned
# deliveries, log their attempts, then move them" cannot interleave with a
# claim. One SELECT answers which deliveries of the batch still carry the
# batch's claim tokens; the owned attempts then go in as a plain INSERT …
# VALUES and the moves as an UPDATE, both executemany over plain tuples (the C
# loop of sqlite3, no JSON to parse per column, no per-row type processing);
# timestamps are rendered once per value in the storage format of
# SQLAlchemy's SQLite DATETIME. (Issue 25: the former INSERT … SELECT … WHERE
# EXISTS per attempt cost SQLite 29-33 us per row against 9-10 for VALUES.)
_SQLITE_OWNERS = """
    SELECT id, claim_token FROM deliveries WHERE id IN (SELECT value FROM json_each(?))
"""
_SQLITE_LOG = f"""
    INSERT INTO delivery_attempts ({", ".join(_PLAIN + _TIMES)})
    VALUES ({", ".join("?" for _ in _LOGGED)})
"""
_SQLITE_MOVE = """
    UPDATE deliveries
    SET status = CASE WHEN status = 'cancelled' AND ?1 = 'pending' THEN status ELSE ?1 END,
        attempts = ?2, next_attempt_at = ?3, claim_token = NULL, updated_at = ?4
    WHERE id = ?5 AND claim_token = ?6
"""


def _sqlite_finish(conn: sa.Connection, finished: Sequence[FinishedAttempt], now: datetime) -> int:
    ids = json.dumps([f.delivery_id for f in finished])
    tokens: dict[int, str | None] = dict(conn.exec_driver_sql(_SQLITE_OWNERS, (ids,)).all())
    log_rows = []
    move_rows = []
    at_now = sqlite_time(now)
    for f in finished:
        if tokens.get(f.delivery_id) != f.claim_token:
            continue  # the lease was lost: the new owner attempts and logs it
        del tokens[f.delivery_id]  # one attempt per claim
        attempted_at = sqlite_time(f.attempted_at)
        next_at = sqlite_time(f.next_attempt_at) if f.next_attempt_at else None
        log_rows.append((*_plain_values(f), attempted_at, next_at))
        move_rows.append(
            (f.status, f.attempt, next_at or attempted_at, at_now, f.delivery_id, f.claim_token)
        )
    if not log_rows:
        return 0
    conn.exec_driver_sql(_SQLITE_LOG, log_rows)
    conn.exec_driver_sql(_SQLITE_MOVE, move_rows)
    return len(log_rows)


class AfterWrite(Protocol):
    """Called inside ``finish_batch``'s transaction once the batch is written, with
    the configurations the batch disabled (each once): the post-finish step that
    sees the finished attempts and their decisions. Injected by the caller (the
    operational webhooks, ``core/operational.py``); storage imports nothing of it."""

    def __call__(
        self,
        conn: sa.Connection,
        finished: Sequence[FinishedAttempt],
        newly_disabled: Sequence[str],
        *,
        now: datetime,
    ) -> object: ...


def finish_batch(
    engine: Engine,
    finished: Sequence[FinishedAttempt],
    *,
    now: datetime,
    after_write: AfterWrite | None = None,
    claim_next: Lease | None = None,
    promoted: list[ClaimedDelivery] | None = None,
) -> int:
    """Record a batch of attempts and their outcomes in ONE transaction.

    For every attempt whose delivery still carries its claim token: insert the
    attempt row (the delivery log) and move the delivery to its new state
    (delivered / failed / dead, or pending again at ``next_attempt_at``), with
    ``attempts`` set to the attempt number. Attempts of deliveries whose lease
    was lost are dropped: the new owner attempts and logs them itself.
    Endpoints that answered 410 are disabled in the same transaction, and
    every endpoint's health counters are updated in it (one more set-based
    statement, ``storage/endpoint_health.py``), and its hourly stats (one
    upsert, ``storage/endpoint_stats.py``).
    Returns the number of attempts recorded.

    Ordered delivery (``storage/ordering.py``): where an attempt ended its
    delivery (not a retry) on an ordered configuration, the key's next held
    delivery is promoted in the same transaction. With ``claim_next`` the
    promoted deliveries are claimed under that lease and appended to
    ``promoted`` (the caller starts them: no claim query needed); without it
    they are due now, and other processes are woken.

    The whole batch is applied set-wise: on SQLite two ``executemany``, on
    PostgreSQL one UPDATE of the deliveries (the moves as one JSON parameter,
    ``json_to_recordset``) and one COPY of their attempts; a few statements per
    batch instead of two per attempt, and little Python work while the event
    loop waits.
    On PostgreSQL the transaction commits with ``synchronous_commit = off``:
    if the database server itself crashed before flushing it, the deliveries
    would still be pending under their lease and simply be attempted again,
    which at-least-once delivery allows.
    """
    if not finished:
        return 0
    sqlite = db.is_sqlite(engine)
    payload = "" if sqlite else _pg_rows(finished)
    with db.write_transaction(engine) as conn:
        ended: list[tuple[str, str, str]] = []
        if sqlite:
            recorded = _sqlite_finish(conn, finished, now)
            keyed = [
                f for f in finished if f.ordering_key and f.status is not DeliveryStatus.PENDING
            ]
            if keyed:
                ordered = ordering.ordered_configs(conn, [f.config_id for f in keyed])
                ended = [
                    (f.organisation_id, f.config_id, f.ordering_key)
                    for f in keyed
                    if f.config_id in ordered and f.ordering_key
                ]
        else:
            moved: set[int] = set()
            # by position: a Row's lookup by name costs ~0.5 us a column
            for delivery_id, org, config_id, key, ends, _ in conn.execute(
                _PG_MOVE, {"rows": payload, "now": pg_time(now)}
            ):
                moved.add(delivery_id)
                if ends:
                    ended.append((org, config_id, key))
            recorded = _pg_log(conn, [f for f in finished if f.delivery_id in moved])
        endpoint_health.record(conn, finished)  # one set-based UPDATE per batch
        endpoint_stats.record(conn, finished)  # one upsert per batch (GetEndpointStats)
        disabled = {f.config_id: f.disable_reason for f in finished if f.disable_reason}
        newly_disabled: list[str] = []
        for config_id, reason in disabled.items():
            changed = conn.execute(
                sa.update(configs)
                .where(configs.c.id == config_id, configs.c.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason or "", updated_at=now)
            ).rowcount
            if changed:
                newly_disabled.append(config_id)
        if after_write is not None:  # hook: operational webhooks (core/operational.py)
            after_write(conn, finished, newly_disabled, now=now)
        if ended:  # last: the keys' locks are held until the commit
            _promote(conn, ended, now, claim_next, promoted, pg=not sqlite)
    return int(recorded)


def _promote(
    conn: sa.Connection,
    ended: list[tuple[str, str, str]],
    now: datetime,
    claim_next: Lease | None,
    promoted: list[ClaimedDelivery] | None,
    *,
    pg: bool,
) -> None:
    """The next delivery of each ended ordered key: claimed for the caller, or due
    now. On PostgreSQL ``_PG_MOVE`` locked the keys already, and the claiming
    promotion RETURNs the claim data (one statement)."""
    if claim_next is not None and promoted is not None:
        claim = (claim_next.token, claim_next.until)
        if pg:
            rows = ordering.promote_claimed(
                conn, ended, now=now, claim=claim, returning=_CLAIMED_PG
            )
            got = [_claimed(r, claim_next.token, claim_next.until) for r in rows]
            promoted.extend(sorted(got, key=operator.attrgetter("id")))
            return
        ids = ordering.promote(conn, ended, now=now, claim=claim)
        if ids:
            promoted.extend(_read_claimed(conn, ids, claim_next.token, claim_next.until))
    elif ordering.promote(conn, ended, now=now, locked=pg):
        notify_workers(conn)


def _pg_rows(finished: Sequence[FinishedAttempt]) -> str:
    """The batch's moves as one JSON parameter for ``_PG_MOVE``."""
    rows = [
        {
            "delivery_id": f.delivery_id,
            "claim_token": f.claim_token,
            "status": f.status,
            "attempt": f.attempt,
            "next_due": pg_time(f.next_attempt_at or f.attempted_at),
        }
        for f in finished
    ]
    return json.dumps(rows, separators=(",", ":"))


def _pg_log(conn: sa.Connection, finished: Sequence[FinishedAttempt]) -> int:
    """COPY the attempt rows of ``finished`` in the transaction of ``conn``."""
    if not finished:
        return 0
    driver: Any = conn.connection.driver_connection  # a psycopg 3 connection
    with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
        copy.set_types(_PG_COPY_TYPES)
        for f in finished:
            copy.write_row((*_plain_values(f), f.attempted_at, f.next_attempt_at))
    return len(finished)


def release(engine: Engine, claimed: Iterable[ClaimedDelivery], *, now: datetime) -> int:
    """Hand claimed but unattempted deliveries back: due now, no token.

    Used on shutdown and when a claimed delivery cannot start in time, so other
    workers need not wait for the lease to run out.
    """
    by_token: dict[str, list[int]] = {}
    for c in claimed:
        by_token.setdefault(c.claim_token, []).append(c.id)
    if not by_token:
        return 0
    count = 0
    with db.write_transaction(engine) as conn:
        for token, ids in by_token.items():
            result = conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.claim_token == token)
                .values(next_attempt_at=now, claim_token=None, updated_at=now)
            )
            count += result.rowcount
    return count

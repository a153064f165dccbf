"""Ordered delivery per key (issue 22): sequence numbers, held deliveries, promotion.

The rule: for a configuration with ``ordered`` set, the pending deliveries that
share an ordering key are attempted one at a time in sequence order. It is kept
*structurally*, so that the claim query stays what it is:

- At most one pending delivery per (configuration, key) is **active** (due,
  claimed, or backing off before its next retry). The others are **held**:
  their ``next_attempt_at`` is ``domain.HELD_UNTIL``, beyond every claim's
  ``next_attempt_at <= now``, so no claim takes them, in any process, and no
  claim scans them (the due index ends before them). A head retrying with
  backoff holds back only its own key: the other keys' heads are due.
- Publishing (``storage/events.py``) inserts a keyed delivery to an ordered
  configuration active only if its key has no pending delivery there yet (and
  only the first of a batch): else held (PostgreSQL: the insert statement
  probes, ``busy_probe``; SQLite: ``busy_keys`` before it). Only active ones may be handed over
  to the local worker, so the hand-off never overtakes a waiting delivery.
- When an active delivery ends (delivered, failed, dead, cancelled),
  ``promote`` makes the key's lowest-sequence held delivery active: due now,
  or claimed at once by the worker that recorded the end (``finish_batch``).

Races on PostgreSQL (READ COMMITTED, many processes): "is the key busy?" at
publish and "promote the next one" at finish must not miss each other's
uncommitted rows, else a delivery stays held for ever. Both take the key's
``ordering_sequences`` row lock first (publish: the upsert that numbers the
events, ``PG_SEQUENCE_UPSERT``; finish: its own statement, ``lock_ended_cte``;
retry, replay: ``lock_keys``; all in the database's key order, so no
deadlock) and then read in a *later statement*, whose snapshot sees what the
other side committed before releasing the lock (a statement's snapshot is
taken before it waits for a lock, so the lock and the read cannot be one
statement). On SQLite the write transaction (BEGIN IMMEDIATE) serialises
everything already.

Sequence numbers are per (organisation, key), 1, 2, 3, …, given in the publish
transaction under that lock: in acceptance (commit) order, no duplicates. An
event id already stored (a publisher's retry) gets no number, so a retried
publish leaves no gap.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhooks_service.domain import HELD_UNTIL, DeliveryStatus
from webhooks_service.storage.models import (
    Delivery,
    Event,
    OrderingSequence,
    UTCDateTime,
    WebhookConfig,
)

_S = cast(sa.Table, OrderingSequence.__table__)
_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_C = cast(sa.Table, WebhookConfig.__table__)

OrgKey = tuple[str, str]  # (organisation_id, ordering_key)
ConfigKey = tuple[str, str]  # (config_id, ordering_key)


def _pg(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def already_stored(conn: sa.Connection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (organisation_id, event_id) are stored already (duplicates get no
    number). Read before the keys are locked, to keep the lock short: a
    duplicate published at that very moment by another publisher can still
    cost a number (a gap), never a reuse."""
    wanted = sorted(set(pairs))
    if not wanted:
        return set()
    rows = conn.execute(_STORED_PG if _pg(conn) else _STORED_SQLITE, {"pairs": json.dumps(wanted)})
    return {(r[0], r[1]) for r in rows}


def sequence_events(
    conn: sa.Connection, keyed: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str], int]:
    """Number the new keyed events about to be stored: ``(organisation_id,
    event_id, ordering_key)`` in acceptance order in (no duplicates),
    ``{(organisation_id, event_id): sequence}`` out. One upsert adds each
    key's count to its last number and locks the keys' rows (in key order)
    until the transaction ends."""
    if not keyed:
        return {}
    counts = Counter((org, key) for org, _, key in keyed)
    insert = (postgresql.insert if _pg(conn) else sqlite.insert)(_S)
    upsert = (
        insert.values(
            [
                {"organisation_id": o, "ordering_key": k, "last_sequence": n}
                for (o, k), n in sorted(counts.items())
            ]
        )
        .on_conflict_do_update(
            index_elements=[_S.c.organisation_id, _S.c.ordering_key],
            set_={"last_sequence": insert.excluded.last_sequence + _S.c.last_sequence},
        )
        .returning(_S.c.organisation_id, _S.c.ordering_key, _S.c.last_sequence)
    )
    # The first number of each key in this batch.
    nxt = {(r[0], r[1]): int(r[2]) - counts[(r[0], r[1])] + 1 for r in conn.execute(upsert)}
    numbered: dict[tuple[str, str], int] = {}
    for org, event_id, key in keyed:
        numbered[(org, event_id)] = nxt[(org, key)]
        nxt[(org, key)] += 1
    return numbered


# PostgreSQL: sequence_events as one textual statement for the pipelined publish
# (storage/events.py): each (organisation_id, ordering_key, count) adds its count,
# the rows locked in the database's key order (that of lock_keys and
# lock_ended_cte, so publisher and finisher never deadlock), with no RETURNING:
# the insert that follows reads the numbers under the lock itself
# (``SEQUENCE_OF``).
PG_SEQUENCE_UPSERT = sa.text(
    """
    INSERT INTO ordering_sequences AS s (organisation_id, ordering_key, last_sequence)
    SELECT x.value ->> 0, x.value ->> 1, CAST(x.value ->> 2 AS bigint)
    FROM json_array_elements(CAST(:counts AS json)) AS x(value)
    ORDER BY 1, 2
    ON CONFLICT (organisation_id, ordering_key)
    DO UPDATE SET last_sequence = s.last_sequence + excluded.last_sequence
    """
)


def sequence_counts(
    keyed: Sequence[tuple[str, str, str]],
) -> tuple[str, dict[tuple[str, str], int]]:
    """PostgreSQL's pipelined numbering: ``(organisation_id, event_id,
    ordering_key)`` in acceptance order in (no duplicates); out, the
    ``:counts`` of ``PG_SEQUENCE_UPSERT`` and, by (organisation_id, event_id),
    how far below its key's new last number each event's number is (the
    insert computes ``SEQUENCE_OF``)."""
    counts = Counter((org, key) for org, _, key in keyed)
    left = dict(counts)
    below: dict[tuple[str, str], int] = {}
    for org, event_id, key in keyed:
        left[(org, key)] -= 1
        below[(org, event_id)] = left[(org, key)]
    return json.dumps([[o, k, n] for (o, k), n in sorted(counts.items())]), below


def sequence_of(org: str, key: str, below: str) -> str:
    """SQL: an event's number in the statement after ``PG_SEQUENCE_UPSERT``, from
    its key's locked row (``below``: ``sequence_counts``' offset)."""
    return (
        f"(SELECT q.last_sequence FROM ordering_sequences AS q"
        f" WHERE q.organisation_id = {org} AND q.ordering_key = {key}) - {below}"
    )


def busy_keys(conn: sa.Connection, pairs: Iterable[ConfigKey]) -> set[ConfigKey]:
    """The (configuration, key) pairs that have a pending delivery (active or held):
    one probe of ix_deliveries_ordering per pair (see ``_HEAD``)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return set()
    rows = conn.execute(
        _BUSY_PG if _pg(conn) else _BUSY_SQLITE, {"keys": json.dumps([list(p) for p in wanted])}
    )
    return {(r[0], r[1]) for r in rows if r[2] is not None}


def lock_keys(conn: sa.Connection, keys: Iterable[OrgKey]) -> None:
    """Take the keys' sequence row locks (PostgreSQL; SQLite's write transaction
    already excludes everyone), in key order, before promoting."""
    wanted = sorted(set(keys))
    if not wanted or not _pg(conn):
        return
    conn.execute(
        sa.select(_S.c.organisation_id)
        .where(sa.tuple_(_S.c.organisation_id, _S.c.ordering_key).in_(wanted))
        .order_by(_S.c.organisation_id, _S.c.ordering_key)
        .with_for_update()
    ).all()


_KEYS_PG = (
    "SELECT x.value ->> 0 AS config_id, x.value ->> 1 AS ordering_key"
    " FROM json_array_elements(CAST(:keys AS json)) AS x(value)"
)
_KEYS_SQLITE = (
    "SELECT json_extract(j.value, '$[0]') AS config_id,"
    " json_extract(j.value, '$[1]') AS ordering_key FROM json_each(:keys) AS j"
)
# Stored events among (organisation_id, event_id) pairs: one probe of the
# unique index per pair.
_STORED = (
    "SELECT e.organisation_id, e.event_id FROM ({pairs}) AS x"
    " JOIN events AS e ON e.organisation_id = x.a AND e.event_id = x.b"
)
_STORED_PG = sa.text(
    _STORED.format(
        pairs="SELECT v ->> 0 AS a, v ->> 1 AS b"
        " FROM json_array_elements(CAST(:pairs AS json)) AS v"
    )
)
_STORED_SQLITE = sa.text(
    _STORED.format(
        pairs="SELECT json_extract(j.value, '$[0]') AS a, json_extract(j.value, '$[1]') AS b"
        " FROM json_each(:pairs) AS j"
    )
)
# A key's first pending delivery of a configuration in ix_deliveries_ordering's
# order (config, key, next_attempt_at, sequence): a correlated probe written in
# the index's order, so that the planner takes that index even with stale
# statistics (see _PROMOTE).
_HEAD_OF = """(SELECT {{column}} FROM deliveries AS h
        WHERE h.config_id = {config} AND h.ordering_key = {key}
          AND h.status = 'pending' AND h.ordering_key IS NOT NULL
        ORDER BY h.next_attempt_at, h.sequence LIMIT 1)"""
_HEAD = _HEAD_OF.format(config="k.config_id", key="k.ordering_key")


def busy_probe(config: str, key: str) -> str:
    """SQL true when (``config``, ``key``), two SQL expressions, has a pending
    delivery (active or held): the probe of ``busy_keys`` for a statement of
    its own (PostgreSQL's publish insert, ``storage/events.py``). Its snapshot
    must come after the key's lock (``sequence_events``), as for ``busy_keys``."""
    return _HEAD_OF.format(config=config, key=key).format(column="h.id") + " IS NOT NULL"


_BUSY = (
    "WITH k AS ({keys}) SELECT k.config_id, k.ordering_key, "
    + _HEAD.format(column="h.id")
    + " FROM k"
)
_BUSY_PG = sa.text(_BUSY.format(keys=_KEYS_PG))
_BUSY_SQLITE = sa.text(_BUSY.format(keys=_KEYS_SQLITE))

# For each key, its head (_HEAD) is the active delivery if there is one (due,
# claimed or backing off: next_attempt_at < HELD_UNTIL), else the held one with
# the lowest sequence number — which then becomes active: due at :due, under
# :token when the caller claims it at once. Without the index's order spelled
# out, PostgreSQL with stale statistics took ix_deliveries_due (it also has
# next_attempt_at and config_id) and walked every held row of the
# configuration per key (0.17x the unordered rate in bench_ordering); and
# "ordering_key IS NOT NULL" (the partial index's predicate) must be written,
# the planner does not infer it from the join. The UPDATE then finds the
# rows by primary key only: its re-check that the row is still pending (a
# concurrent DeleteWebhookConfig cancels without the key locks) is wrapped in
# a CASE so that no partial index "status = 'pending'" is matched to it
# (PostgreSQL would AND a scan of every pending row in).
# PostgreSQL's claiming promotion (``promote_claimed``) joins the event and the
# configuration to RETURN the claim data itself: no read after it.
_PROMOTE = """
    WITH k AS ({keys}),
    nxt AS (SELECT {head} AS id FROM k)
    UPDATE deliveries AS d SET next_attempt_at = :due, claim_token = :token, updated_at = :now
    {joins}
    WHERE {ids} AND (CASE WHEN d.status = 'pending' THEN true END) {join_on}
    RETURNING {returning}
"""


def _promote_statement(pg: bool, returning: str = "") -> sa.TextClause:
    # PostgreSQL: = ANY(ARRAY(...)) makes the UPDATE look the few ids up by key
    # (IN (subquery) may become a hash join over every held row).
    ids = "d.id = ANY(ARRAY(SELECT id FROM nxt WHERE id IS NOT NULL))"
    if not pg:
        ids = "d.id IN (SELECT id FROM nxt WHERE id IS NOT NULL)"
    head = _HEAD.format(column="CASE WHEN h.next_attempt_at = :held THEN h.id END")
    sql = _PROMOTE.format(
        keys=_KEYS_PG if pg else _KEYS_SQLITE,
        ids=ids,
        head=head,
        joins="FROM events AS e, webhook_configs AS c" if returning else "",
        join_on="AND e.pk = d.event_pk AND c.id = d.config_id" if returning else "",
        returning=returning or ("d.id" if pg else "id"),  # SQLite: no alias in RETURNING
    )
    return sa.text(sql).bindparams(
        sa.bindparam("held", type_=UTCDateTime()),
        sa.bindparam("due", type_=UTCDateTime()),
        sa.bindparam("now", type_=UTCDateTime()),
    )


_PROMOTE_PG = _promote_statement(True)
_PROMOTE_SQLITE = _promote_statement(False)


def lock_ended_cte(ended: str) -> str:
    """PostgreSQL: a CTE body that locks, in key order, the sequence rows of
    the keys in ``ended`` (a CTE with organisation_id and ordering_key): for
    ``finish_batch``'s statement, so that its promotion (``promote_claimed`` or
    ``promote`` with ``locked``, a later statement) needs no ``lock_keys`` round
    trip. The CTE must be referenced (a SELECT in WITH runs only when read)."""
    return (
        "SELECT s.organisation_id FROM ordering_sequences AS s"
        " WHERE (s.organisation_id, s.ordering_key) IN"
        f" (SELECT organisation_id, ordering_key FROM {ended})"
        " ORDER BY s.organisation_id, s.ordering_key FOR UPDATE OF s"
    )


@functools.cache
def _promote_returning(returning: str) -> sa.TextClause:
    return _promote_statement(True, returning)


def promote_claimed(
    conn: sa.Connection,
    keys: Iterable[tuple[str, str, str]],
    *,
    now: datetime,
    claim: tuple[str, datetime],
    returning: str,
) -> Sequence[sa.Row[Any]]:
    """PostgreSQL: ``promote`` under ``claim`` for keys the caller has locked
    already (``lock_ended_cte``), in one statement that RETURNs ``returning``
    (columns of ``deliveries AS d``, ``events AS e``, ``webhook_configs AS c``):
    the promoted deliveries' claim data."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    token, until = claim
    return conn.execute(
        _promote_returning(returning),
        {
            "keys": json.dumps([[c, k] for _, c, k in wanted]),
            "held": HELD_UNTIL,
            "due": until,
            "token": token,
            "now": now,
        },
    ).all()


def promote(
    conn: sa.Connection,
    keys: Iterable[tuple[str, str, str]],
    *,
    now: datetime,
    claim: tuple[str, datetime] | None = None,
    due: datetime | None = None,
    locked: bool = False,
) -> list[int]:
    """Make the next held delivery of each ``(organisation_id, config_id,
    ordering_key)`` active where none is: due at ``due`` (default now; an
    endpoint waiting for its verification gives PARKED_UNTIL), or, with
    ``claim`` (token, lease end), claimed by the caller. Locks the keys first
    (unless ``locked``: the caller's earlier statement did). Returns the ids
    promoted. Harmless for a key that still has an active delivery."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    pg = _pg(conn)
    if not locked:
        lock_keys(conn, [(org, key) for org, _, key in wanted])
    token, due = claim if claim is not None else (None, due or now)
    rows = conn.execute(
        _PROMOTE_PG if pg else _PROMOTE_SQLITE,
        {
            "keys": json.dumps([[c, k] for _, c, k in wanted]),
            "held": HELD_UNTIL,
            "due": due,
            "token": token,
            "now": now,
        },
    )
    return [int(r[0]) for r in rows]


def ordered_configs(conn: sa.Connection, config_ids: Iterable[str]) -> set[str]:
    """Which of these configurations are ordered now."""
    wanted = sorted(set(config_ids))
    if not wanted:
        return set()
    return set(
        conn.execute(sa.select(_C.c.id).where(_C.c.id.in_(wanted), _C.c.ordered.is_(True)))
        .scalars()
        .all()
    )


def start_ordering(conn: sa.Connection, organisation_id: str, config_id: str, now: datetime) -> int:
    """A configuration became ordered: hold its queued keyed deliveries but one
    per key. Per key, the lowest-sequence unclaimed pending delivery stays
    active unless one of the key's deliveries is being attempted (claimed) —
    that one is the key's head, and its end promotes the next. Returns how
    many were held."""
    d2 = _D.alias("d2")
    busy_or_earlier = sa.exists().where(
        d2.c.config_id == _D.c.config_id,
        d2.c.ordering_key == _D.c.ordering_key,
        d2.c.status == DeliveryStatus.PENDING,
        d2.c.ordering_key.is_not(None),
        d2.c.id != _D.c.id,
        sa.or_(d2.c.claim_token.is_not(None), d2.c.sequence < _D.c.sequence),
    )
    return _move(
        conn,
        organisation_id,
        config_id,
        [
            _D.c.ordering_key.is_not(None),
            _D.c.claim_token.is_(None),
            _D.c.next_attempt_at < HELD_UNTIL,
            busy_or_earlier,
        ],
        due=HELD_UNTIL,
        now=now,
    )


def stop_ordering(conn: sa.Connection, organisation_id: str, config_id: str, now: datetime) -> int:
    """A configuration is no longer ordered: every held delivery is due now."""
    return _move(
        conn, organisation_id, config_id, [_D.c.next_attempt_at == HELD_UNTIL], due=now, now=now
    )


def _move(
    conn: sa.Connection,
    organisation_id: str,
    config_id: str,
    where: list[sa.ColumnElement[bool]],
    *,
    due: datetime,
    now: datetime,
) -> int:
    """Set ``next_attempt_at`` of the configuration's pending deliveries matching ``where``."""
    return int(
        conn.execute(
            sa.update(_D)
            .where(
                _D.c.config_id == config_id,
                _D.c.organisation_id == organisation_id,
                _D.c.status == DeliveryStatus.PENDING,
                *where,
            )
            .values(next_attempt_at=due, updated_at=now)
        ).rowcount
    )

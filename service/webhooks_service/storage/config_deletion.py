"""Deleting a webhook configuration: the row stays, its queue ends.

``delete_config`` is one write transaction:

1. the configuration row (locked on PostgreSQL) is marked ``deleted_at``
   and disabled, and its secret, previous secret and custom headers are
   erased; from then on ``storage/configs.py`` treats it as absent (lists,
   gets, the quota count, fan-out), while its deliveries and attempts keep
   referencing it, so the delivery log stays readable until retention;
2. every pending delivery of it that no worker holds (no claim token, or a
   lapsed lease) is **cancelled**: status ``cancelled``, and one attempt row
   with outcome ``cancelled`` and the error :data:`CANCELLED_ERROR`, so the
   log shows how each ended (no HTTP request is made);
3. pending deliveries a worker holds right now are marked ``cancelled`` too
   but keep their claim token: the attempt in flight is still logged by
   ``queue.finish_batch``; if it ended the delivery (delivered, failed, dead)
   that is its final state, otherwise it stays cancelled and is not retried.

Set-based statements (INSERT … SELECT, UPDATE): a config with a large
backlog is cancelled in one short transaction, not row by row.

The workers of other processes hear of it at once (issue 27.2): on
PostgreSQL the transaction sends ``NOTIFY webhooks_configs`` with
``deleted:<config id>`` (:func:`notify_stopped`; an admin's disabling sends
``disabled:<config id>``), and each worker drops what it holds of that
configuration (``delivery/stops.py``). The process that served the call is
told directly, before the call returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhooks_service.storage.models import (
    ATTEMPT_COLUMNS,
    Delivery,
    DeliveryAttempt,
    Event,
    WebhookConfig,
)

__all__ = [
    "CANCELLED_ERROR",
    "CANCELLED_OUTCOME",
    "CONFIGS_CHANNEL",
    "DeletedConfig",
    "delete_config",
    "notify_stopped",
    "parse_stopped",
]

_C = cast(sa.Table, WebhookConfig.__table__)
_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_A = cast(sa.Table, DeliveryAttempt.__table__)

CANCELLED_OUTCOME = "cancelled"
CANCELLED_ERROR = "configuration deleted: the delivery was not attempted"
CONFIGS_CHANNEL = "webhooks_configs"  # NOTIFY payload: "deleted:<id>" or "disabled:<id>"


def notify_stopped(conn: sa.Connection, config_id: str, *, deleted: bool) -> None:
    """Tell every worker process, at commit, that ``config_id`` was deleted or
    disabled (PostgreSQL; SQLite has no NOTIFY: one process, told directly)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {
                "channel": CONFIGS_CHANNEL,
                "payload": f"{'deleted' if deleted else 'disabled'}:{config_id}",
            },
        )


def parse_stopped(payload: str) -> tuple[str, bool] | None:
    """(config id, deleted) of a ``webhooks_configs`` payload; None if malformed."""
    kind, _, config_id = payload.partition(":")
    if kind not in ("deleted", "disabled") or not config_id:
        return None
    return config_id, kind == "deleted"


class DeletedConfig:
    """What a deletion did: the URL the configuration had and the deliveries it cancelled."""

    def __init__(self, url: str, cancelled: int) -> None:
        self.url = url
        self.cancelled = cancelled


def delete_config(
    conn: sa.Connection, organisation_id: str, config_id: str, *, now: datetime
) -> DeletedConfig | None:
    """Delete the organisation's live configuration ``config_id`` (None: no such one).

    Call inside a write transaction.
    """
    query = sa.select(_C.c.url).where(
        _C.c.id == config_id, _C.c.organisation_id == organisation_id, _C.c.deleted_at.is_(None)
    )
    if conn.dialect.name == "postgresql":
        # FOR NO KEY UPDATE, not FOR UPDATE: a finishing worker inserting a row that
        # references this one (a new hour of endpoint_stats) takes KEY SHARE on it
        # while holding the endpoint's delivery rows that this deletion then
        # updates; FOR UPDATE would wait for them and they for it (a deadlock, seen
        # under load). core/configs.delete_config runs the rest again if one happens.
        query = query.with_for_update(key_share=True)
    url = conn.execute(query).scalar()
    if url is None:
        return None
    conn.execute(
        sa.update(_C)
        .where(_C.c.id == config_id)
        .values(
            deleted_at=now,
            enabled=False,
            secret="",
            previous_secret=None,
            previous_secret_expires_at=None,
            headers=None,
            disabled_reason="",
            updated_at=now,
        )
    )
    idle = sa.and_(
        _D.c.config_id == config_id,
        _D.c.status == "pending",
        sa.or_(_D.c.claim_token.is_(None), _D.c.next_attempt_at <= now),
    )
    conn.execute(
        sa.insert(_A).from_select(
            list(ATTEMPT_COLUMNS),
            sa.select(
                _D.c.organisation_id,
                _D.c.id,
                _D.c.event_pk,
                _E.c.event_id,
                _E.c.event_type,
                _D.c.config_id,
                _D.c.attempts + 1,
                sa.literal(url, sa.String()),
                sa.literal(0),
                sa.literal(""),
                sa.false(),
                sa.literal(CANCELLED_ERROR),
                sa.literal(0),
                sa.literal(CANCELLED_OUTCOME),
                sa.bindparam("now", now, type_=_A.c.attempted_at.type),
                sa.null(),
            )
            .join(_E, _E.c.pk == _D.c.event_pk)
            .where(idle)
            .order_by(_D.c.id),
        )
    )
    cancelled = conn.execute(
        sa.update(_D)
        .where(idle)
        .values(
            status=CANCELLED_OUTCOME,
            attempts=_D.c.attempts + 1,
            claim_token=None,
            next_attempt_at=now,
            updated_at=now,
        )
    ).rowcount
    # Held by a worker right now: its attempt is still logged, never retried.
    in_flight = conn.execute(
        sa.update(_D)
        .where(_D.c.config_id == config_id, _D.c.status == "pending")
        .values(status=CANCELLED_OUTCOME, updated_at=now)
    ).rowcount
    notify_stopped(conn, config_id, deleted=True)
    return DeletedConfig(str(url), int(cancelled) + int(in_flight))


def purge_deleted(conn: sa.Connection, cutoff: datetime) -> int:
    """Remove configurations deleted before ``cutoff`` that no delivery references
    any more (retention pruned their events); how many. Call in a write transaction."""
    referenced = sa.select(_D.c.id).where(_D.c.config_id == _C.c.id).exists()
    result = conn.execute(
        sa.delete(_C).where(_C.c.deleted_at.is_not(None), _C.c.deleted_at < cutoff, ~referenced)
    )
    return int(result.rowcount)

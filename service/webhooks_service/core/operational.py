"""Operational webhooks: the service tells an organisation about its own endpoints.

Two catalog types of category ``webhook`` (``core/catalog.py``):

``webhook.endpoint_disabled``
    an endpoint was disabled. ``data``: ``config_id``, ``url``, ``reason``
    (:class:`DisabledReason`: ``ENDPOINT_DISABLED_REASON_GONE`` for a 410,
    ``…_FAILING`` for failing longer than the operator's period, ``…_ADMIN``
    for a Put with ``enabled: false``), ``failing_since`` (RFC 3339, only
    when known) and ``disabled_at`` (RFC 3339).
``webhook.delivery_failed``
    a delivery ended without success. ``data``: ``config_id``,
    ``delivery_id`` (``dlv_…``), ``event_id``, ``event_type``, ``outcome``
    (``OUTCOME_FAILED`` or ``OUTCOME_DEAD``, the Outcome enum's names),
    ``attempts``, ``last_status_code`` (0 without a response) and
    ``last_error`` (the transport error, or ``HTTP <status>``).

Rules:

- Delivered like any event (signed, retried, logged) to the organisation's
  enabled configurations that subscribe by name (``webhook.*`` or the exact
  type; ``*`` does not include them), **never to the configuration the event
  is about**.
- **No loops**: deliveries of ``webhook.*`` events (these two, and the test
  event ``webhook.ping``) never produce a ``webhook.delivery_failed``.
  Deliveries that ended without a request (endpoint disabled, configuration
  deleted) are not reported one by one either: the disabling is.
- **Atomic with what they report**: each is stored in the transaction that
  records the attempt, disables the endpoint (410: ``finish_batch``; the
  health sweep; the admin's Put), through ``storage/operational.py``, inside
  a savepoint: if queueing them fails, that is logged and the change itself
  (the batch of attempts, the disabling) is kept. A 410 answered by several
  deliveries in flight disables once, so it is reported once.

The entry points are small hooks: :func:`after_finish` (``finish_batch``'s
``after_write``, called with the connection once a batch is written),
:func:`endpoint_disabled_by_sweep` and :func:`endpoint_disabled_by_admin`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhooks_service.core import catalog, payloads
from webhooks_service.core.ids import PublicIds
from webhooks_service.core.publishing import build_payload, new_event_id, rfc3339
from webhooks_service.core.server_keys import keyring_on
from webhooks_service.domain import STATUS_AFTER, FinishedAttempt
from webhooks_service.storage import operational as store
from webhooks_service.storage.configs import ConfigRow

log = logging.getLogger(__name__)

__all__ = [
    "DELIVERY_FAILED",
    "ENDPOINT_DISABLED",
    "DisabledReason",
    "Emitter",
    "after_finish",
    "endpoint_disabled_by_admin",
    "endpoint_disabled_by_sweep",
]

ENDPOINT_DISABLED = "webhook.endpoint_disabled"
DELIVERY_FAILED = "webhook.delivery_failed"
assert {ENDPOINT_DISABLED, DELIVERY_FAILED} <= catalog.OPERATIONAL_TYPES

# Stored outcome -> the Outcome enum's name on the wire (admin.proto).
_OUTCOME_NAMES = {"failed": "OUTCOME_FAILED", "dead": "OUTCOME_DEAD"}


class DisabledReason(enum.StrEnum):
    GONE = "ENDPOINT_DISABLED_REASON_GONE"
    FAILING = "ENDPOINT_DISABLED_REASON_FAILING"
    ADMIN = "ENDPOINT_DISABLED_REASON_ADMIN"


def _event(
    organisation_id: str, event_type: str, about: str, data: dict[str, Any], now: datetime
) -> store.OperationalEvent:
    event_id = new_event_id()
    body = payloads.render_data(event_type, data)  # checked against its payload message
    return store.OperationalEvent(
        organisation_id=organisation_id,
        event_id=event_id,
        event_type=event_type,
        occurred_at=now,
        payload=build_payload(event_id, event_type, now, body),
        about_config_id=about,
    )


def _disabled_event(
    subject: store.Subject, reason: DisabledReason, now: datetime
) -> store.OperationalEvent:
    data: dict[str, Any] = {"config_id": subject.id, "url": subject.url, "reason": reason.value}
    if subject.failing_since is not None:
        data["failing_since"] = rfc3339(subject.failing_since)
    data["disabled_at"] = rfc3339(now)
    return _event(subject.organisation_id, ENDPOINT_DISABLED, subject.id, data, now)


def _failed_event(f: FinishedAttempt, now: datetime, ids: PublicIds) -> store.OperationalEvent:
    code = f.response_status_code
    data = {
        "config_id": f.config_id,
        "delivery_id": ids.delivery(f.delivery_id),  # the opaque id the API shows
        "event_id": f.event_id,
        "event_type": f.event_type,
        "outcome": _OUTCOME_NAMES[f.outcome],
        "attempts": f.attempt,
        "last_status_code": code,
        "last_error": f.error or (f"HTTP {code}" if code else ""),
    }
    return _event(f.organisation_id, DELIVERY_FAILED, f.config_id, data, now)


def _reportable(f: FinishedAttempt) -> bool:
    return f.outcome in _OUTCOME_NAMES and f.attempted and not catalog.is_operational(f.event_type)


def _store(conn: sa.Connection, events: Sequence[store.OperationalEvent], now: datetime) -> int:
    return store.insert_operational(conn, events, now=now, matches=catalog.matches_any)


def _guarded(conn: sa.Connection, work: Callable[[], int]) -> int:
    """Run ``work`` in a savepoint: a failure here is logged and never undoes the
    change being reported (the batch of attempts, the disabling)."""
    try:
        with conn.begin_nested():
            return work()
    except Exception:
        log.exception("could not queue operational webhooks; the change itself is kept")
        return 0


def after_finish(
    conn: sa.Connection,
    finished: Sequence[FinishedAttempt],
    newly_disabled: Iterable[str],
    *,
    now: datetime,
) -> int:
    """``finish_batch``'s hook: events for the batch just written; deliveries created.

    ``newly_disabled``: configurations this batch disabled (410), each once.
    Costs nothing for a batch without final failures or disablings.
    """
    failed = [f for f in finished if _reportable(f)]
    disabled = list(newly_disabled)
    if not failed and not disabled:
        return 0  # the common case: no statement, no savepoint
    return _guarded(conn, lambda: _after_finish(conn, failed, disabled, now))


def _after_finish(
    conn: sa.Connection, failed: list[FinishedAttempt], disabled: list[str], now: datetime
) -> int:
    events: list[store.OperationalEvent] = []
    if disabled:
        for subject in store.subjects(conn, disabled).values():
            events.append(_disabled_event(subject, DisabledReason.GONE, now))
    if failed:
        expected = {f.delivery_id: (STATUS_AFTER[f.outcome].value, f.attempt) for f in failed}
        recorded = store.final_deliveries(conn, expected)
        ids = keyring_on(conn).ids
        events.extend(_failed_event(f, now, ids) for f in failed if f.delivery_id in recorded)
    return _store(conn, events, now)


def endpoint_disabled_by_sweep(conn: sa.Connection, config_id: str, *, now: datetime) -> int:
    """The health sweep disabled ``config_id`` (failing for too long), in ``conn``."""

    def work() -> int:
        subject = store.subjects(conn, [config_id]).get(config_id)
        if subject is None:
            return 0
        return _store(conn, [_disabled_event(subject, DisabledReason.FAILING, now)], now)

    return _guarded(conn, work)


def endpoint_disabled_by_admin(conn: sa.Connection, config: ConfigRow, *, now: datetime) -> int:
    """An admin's Put disabled ``config`` (as it was before), in ``conn``."""
    subject = store.Subject(
        config.id, config.organisation_id, config.url, config.health.failing_since
    )
    return _guarded(
        conn, lambda: _store(conn, [_disabled_event(subject, DisabledReason.ADMIN, now)], now)
    )


class Emitter:
    """The worker's ``after_write``: :func:`after_finish`, remembering whether it
    created deliveries so that the worker wakes itself for them (SQLite has no
    NOTIFY; on PostgreSQL the NOTIFY wakes the other processes)."""

    def __init__(self) -> None:
        self.created = False

    def __call__(
        self,
        conn: sa.Connection,
        finished: Sequence[FinishedAttempt],
        newly_disabled: Iterable[str],
        *,
        now: datetime,
    ) -> None:
        if after_finish(conn, finished, newly_disabled, now=now):
            self.created = True

    def take_created(self) -> bool:
        created, self.created = self.created, False
        return created

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

Rules (bounded by design, issue 26.1: the work one published event causes is
O(N) in the organisation's N endpoints, never O(N²)):

- Delivered like any event (signed, retried, logged) to the organisation's
  enabled configurations that subscribe by name (``webhook.*`` or the exact
  type; ``*`` does not include them), **never to the configuration the event
  is about**.
- **No loops**: deliveries of ``webhook.*`` events (these two, and the test
  event ``webhook.ping``) never produce a ``webhook.delivery_failed``.
  Deliveries that ended without a request (endpoint disabled, configuration
  deleted) are not reported one by one either: the disabling is.
- **Coalesced per endpoint**: at most one ``webhook.delivery_failed`` per
  endpoint per window (``operational_window``, 60 s): the first failure after
  a window is reported at once; the others are counted and reported together
  (``failed_deliveries``, ``first_delivery_id``/``last_delivery_id``,
  ``first_failed_at``/``last_failed_at``; the other fields are the newest
  failure's) by the endpoint's next failure after the window, or by the
  health sweep (:func:`report_due`, every minute) if none comes.
- **An organisation's budget**: its operational deliveries per window are at
  most its live configurations (N, enabled or not; at least 10). An event
  whose fan-out does not fit is not stored (suppressed; an endpoint's
  health counters still count every failure). So 100 endpoints answering
  400 to one event, all subscribed to ``["*", "webhook.*"]``, cause 100
  failed deliveries and at most 100 operational ones (before: 100 x 99); K
  events (or a replay of them) at most K*N + N per window.
- **Counted** per organisation (``operational_budgets``: sent, coalesced,
  suppressed totals) and per process (the :class:`Emitter`'s counts, which
  the worker exports as ``webhooks_operational_events_total{result}``).
- **Atomic with what they report**: each is stored in the transaction that
  records the attempt, disables the endpoint (410: ``finish_batch``; the
  health sweep; the admin's Put), through ``storage/operational.py``, inside
  a savepoint: if queueing them fails, that is logged and the change itself
  (the batch of attempts, the disabling) is kept. A 410 answered by several
  deliveries in flight disables once, so it is reported once.

The entry points are small hooks: :func:`after_finish` (``finish_batch``'s
``after_write``, called with the connection once a batch is written),
:func:`endpoint_disabled_by_sweep`, :func:`endpoint_disabled_by_admin` and
:func:`report_due`.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhooks_service.core import catalog, payloads
from webhooks_service.core.event_body import build_payload, new_event_id, rfc3339
from webhooks_service.core.ids import PublicIds
from webhooks_service.core.server_keys import keyring_on
from webhooks_service.domain import STATUS_AFTER, FinishedAttempt
from webhooks_service.storage import operational as store
from webhooks_service.storage import operational_failures as failure_store
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
    "report_due",
]

ENDPOINT_DISABLED = "webhook.endpoint_disabled"
DELIVERY_FAILED = "webhook.delivery_failed"
assert {ENDPOINT_DISABLED, DELIVERY_FAILED} <= catalog.OPERATIONAL_TYPES

# Stored outcome -> the Outcome enum's name on the wire (admin.proto).
_OUTCOME_NAMES = {"failed": "OUTCOME_FAILED", "dead": "OUTCOME_DEAD"}
WINDOW_SECONDS = 60.0  # the default of the operational_window setting
MIN_WINDOW_SECONDS = 1.0


@dataclass
class Counts:
    """Operational events of this process: stored (sent), failures coalesced
    into another report, events suppressed over an organisation's budget."""

    sent: int = 0
    coalesced: int = 0
    suppressed: int = 0
    created: int = 0  # their deliveries

    def add(self, other: Counts) -> None:
        self.sent += other.sent
        self.coalesced += other.coalesced
        self.suppressed += other.suppressed
        self.created += other.created


def _window(seconds: float) -> float:
    return max(seconds, MIN_WINDOW_SECONDS)


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


def _failure(f: FinishedAttempt, ids: PublicIds) -> failure_store.Failure:
    """A final failure and its own event data (the fields of one delivery)."""
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
    return failure_store.Failure(
        f.config_id, f.organisation_id, f.delivery_id, f.attempted_at, json.dumps(data)
    )


def _report_event(
    report: failure_store.Report, ids: PublicIds, now: datetime
) -> store.OperationalEvent:
    data = json.loads(report.data)
    data["failed_deliveries"] = report.count
    data["first_delivery_id"] = ids.delivery(report.first_delivery_id)
    data["last_delivery_id"] = data["delivery_id"]
    data["first_failed_at"] = rfc3339(report.first_failed_at)
    data["last_failed_at"] = rfc3339(report.last_failed_at)
    return _event(report.organisation_id, DELIVERY_FAILED, report.config_id, data, now)


def _reportable(f: FinishedAttempt) -> bool:
    return f.outcome in _OUTCOME_NAMES and f.attempted and not catalog.is_operational(f.event_type)


def _store(
    conn: sa.Connection,
    events: Sequence[store.OperationalEvent],
    now: datetime,
    window: float,
    coalesced: dict[str, int] | None = None,
) -> Counts:
    stored = store.insert_operational(
        conn,
        events,
        now=now,
        matches=catalog.matches_any,
        window=_window(window),
        coalesced=coalesced,
    )
    if stored.suppressed:
        log.info(
            "%d operational event(s) not sent: over their organisation's budget",
            stored.suppressed,
        )
    return Counts(stored.sent, sum((coalesced or {}).values()), stored.suppressed, stored.created)


def _guarded(conn: sa.Connection, work: Callable[[], Counts]) -> Counts:
    """Run ``work`` in a savepoint: a failure here is logged and never undoes the
    change being reported (the batch of attempts, the disabling)."""
    try:
        with conn.begin_nested():
            return work()
    except Exception:
        log.exception("could not queue operational webhooks; the change itself is kept")
        return Counts()


def after_finish(
    conn: sa.Connection,
    finished: Sequence[FinishedAttempt],
    newly_disabled: Iterable[str],
    *,
    now: datetime,
    window: float = WINDOW_SECONDS,
) -> Counts:
    """``finish_batch``'s hook: events for the batch just written.

    ``newly_disabled``: configurations this batch disabled (410), each once.
    Costs nothing for a batch without final failures or disablings.
    """
    failed = [f for f in finished if _reportable(f)]
    disabled = list(newly_disabled)
    if not failed and not disabled:
        return Counts()  # the common case: no statement, no savepoint
    return _guarded(conn, lambda: _after_finish(conn, failed, disabled, now, window))


def _after_finish(
    conn: sa.Connection,
    failed: list[FinishedAttempt],
    disabled: list[str],
    now: datetime,
    window: float,
) -> Counts:
    events: list[store.OperationalEvent] = []
    if disabled:
        for subject in store.subjects(conn, disabled).values():
            events.append(_disabled_event(subject, DisabledReason.GONE, now))
    coalesced: dict[str, int] = {}
    if failed:
        expected = {f.delivery_id: (STATUS_AFTER[f.outcome].value, f.attempt) for f in failed}
        recorded = store.final_deliveries(conn, expected)
        ids = keyring_on(conn).ids
        failures = [_failure(f, ids) for f in failed if f.delivery_id in recorded]
        reports, coalesced = failure_store.coalesce_failures(
            conn, failures, now=now, window=_window(window)
        )
        events.extend(_report_event(r, ids, now) for r in reports)
    return _store(conn, events, now, window, coalesced)


def report_due(conn: sa.Connection, *, now: datetime, window: float = WINDOW_SECONDS) -> Counts:
    """The health sweep's hook: report the failures still unreported when their
    endpoint's window ended (no later failure came to carry them)."""

    def work() -> Counts:
        reports = failure_store.due_reports(conn, now=now, window=_window(window))
        if not reports:
            return Counts()
        ids = keyring_on(conn).ids
        return _store(conn, [_report_event(r, ids, now) for r in reports], now, window)

    return _guarded(conn, work)


def endpoint_disabled_by_sweep(
    conn: sa.Connection, config_id: str, *, now: datetime, window: float = WINDOW_SECONDS
) -> Counts:
    """The health sweep disabled ``config_id`` (failing for too long), in ``conn``."""

    def work() -> Counts:
        subject = store.subjects(conn, [config_id]).get(config_id)
        if subject is None:
            return Counts()
        return _store(conn, [_disabled_event(subject, DisabledReason.FAILING, now)], now, window)

    return _guarded(conn, work)


def endpoint_disabled_by_admin(
    conn: sa.Connection, config: ConfigRow, *, now: datetime, window: float = WINDOW_SECONDS
) -> Counts:
    """An admin's Put disabled ``config`` (as it was before), in ``conn``."""
    subject = store.Subject(
        config.id, config.organisation_id, config.url, config.health.failing_since
    )
    return _guarded(
        conn,
        lambda: _store(conn, [_disabled_event(subject, DisabledReason.ADMIN, now)], now, window),
    )


@dataclass
class Emitter:
    """The worker's ``after_write``: :func:`after_finish` with the operator's
    window, remembering whether it created deliveries so that the worker wakes
    itself for them (SQLite has no NOTIFY; on PostgreSQL the NOTIFY wakes the
    other processes), and counting what it did (``counts``, for metrics)."""

    window: float = WINDOW_SECONDS
    created: bool = False
    counts: Counts = field(default_factory=Counts)

    def __call__(
        self,
        conn: sa.Connection,
        finished: Sequence[FinishedAttempt],
        newly_disabled: Iterable[str],
        *,
        now: datetime,
    ) -> None:
        done = after_finish(conn, finished, newly_disabled, now=now, window=self.window)
        self.counts.add(done)
        if done.created:
            self.created = True

    def take_created(self) -> bool:
        created, self.created = self.created, False
        return created

    def take_counts(self) -> Counts:
        """What was counted since the last call (for the process's metrics)."""
        counts, self.counts = self.counts, Counts()
        return counts

"""SendTestEvent: one signed ``webhook.ping`` (or an event of a type the endpoint
subscribes to) to one endpoint, attempted now.

How the test event is represented (and why):

- **A reserved type, ``webhook.ping``** (``EventType`` origin
  ``EVENT_ORIGIN_TEST``, payload ``WebhookPing``): a ping is about the
  webhook itself. ``PublishEvent`` refuses it and no configuration can
  subscribe to it; it is delivered to the one configuration asked for,
  whatever its ``event_types``. The log shows it like any event,
  and ``ListDeliveryLogs`` accepts it as an ``event_type`` filter.
- **A real event and delivery**, stored like published ones (new id
  ``evt_…``, data ``{"config_id": "whc_…"}``), so the attempt is in the
  delivery log, signed with the endpoint's current secrets, and can be sent
  again with RetryDelivery.
- **Attempted during the call, by the API process**, not by a worker: the
  admin gets the attempt back without a worker being up, and without waiting
  for a poll. It is an ordinary one-configuration delivery through the
  ordinary path: the publish transaction (``storage.events``) stores the
  event and its delivery already claimed under an ordinary lease
  (``lease_seconds``), so workers leave it alone; THE attempt function
  (``delivery.attempt``, same signing, transport, guard and policy as the
  worker's) sends it; ``queue.finish_batch`` records it. If this process dies
  mid-attempt, the lease runs out and a worker delivers it instead
  (at-least-once, as always).
- **Never retried**: a test answers "does it work now?". The delivery is
  claimed with ``retries=False``: any failure is ``failed`` (not
  ``retry_scheduled``/``dead``); a 410 Gone still disables the endpoint, as
  the delivery rules say.
- **Of any subscribed type** (issue 20): with ``event_type``, the event is of
  that catalog type (published or operational), its ``data`` the caller's or
  the catalog example, checked against the type's payload message as a
  publish is (violations named ``data.<field>``), and the endpoint must
  subscribe to the type (INVALID_ARGUMENT on ``event_type`` otherwise). It is
  stored and attempted exactly like the ping: only this endpoint gets it.
- **Bounded per organisation** (``core.redelivery.OrgBudgets``): a burst of
  test events, then a steady rate; past it RESOURCE_EXHAUSTED with the wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import catalog, event_types, operational, payloads
from webhooks_service.core.event_body import build_payload, new_event_id
from webhooks_service.core.ids import check_config_id
from webhooks_service.core.redelivery import OrgBudgets, default_budgets
from webhooks_service.domain import ClaimedDelivery, Clock, FinishedAttempt, new_lease, utcnow
from webhooks_service.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from webhooks_service.storage import db, queue
from webhooks_service.storage import logs as log_store
from webhooks_service.storage.events import NewEvent, PlannedEvent, Target, publish_transaction
from webhooks_service.storage.logs import LogFilters, LogRow

__all__ = ["PING_TYPE", "AttemptSession", "send_test_event"]

PING_TYPE = "webhook.ping"

AttemptFn = Callable[[ClaimedDelivery], Awaitable[FinishedAttempt]]
# Opens THE attempt function for one call (``delivery.attempt.attempt_session``).
AttemptSession = Callable[[], AbstractAsyncContextManager[AttemptFn]]


async def send_test_event(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    *,
    attempt_session: AttemptSession,
    clock: Clock = utcnow,
    budgets: OrgBudgets | None = None,
    event_type: str = "",
    data: Mapping[str, Any] | None = None,
) -> LogRow:
    """Create, attempt and record a ping (or an ``event_type`` event with ``data``,
    default the catalog example) to ``config_id``; returns the logged attempt.

    The attempt and its recording are shielded from cancellation: a client
    that gives up mid-call does not leave the delivery claimed for a lease.
    """
    check_config_id(config_id)
    type_, data_json = _test_data(settings, event_type, data)
    spend = (budgets or default_budgets(settings, engine)).spend_test_event
    await asyncio.to_thread(spend, organisation_id, clock())
    send = _send(
        engine, settings, organisation_id, config_id, clock, attempt_session, type_, data_json
    )
    task = asyncio.ensure_future(send)
    return await asyncio.shield(task)


def _test_data(
    settings: Settings, event_type: str, data: Mapping[str, Any] | None
) -> tuple[str, str]:
    """(type, rendered data) of the test event; INVALID_ARGUMENT naming the field."""
    if not event_type:
        if data is not None:
            raise InvalidArgument(
                "invalid SendTestEvent request",
                [FieldViolation("data", "data needs an event_type (the ping's data is fixed)")],
            )
        return PING_TYPE, ""
    if not catalog.is_known_type(event_type):
        raise InvalidArgument(
            "invalid SendTestEvent request",
            [
                FieldViolation(
                    "event_type",
                    f"{event_type!r} is not a catalog event type: "
                    f"{catalog.did_you_mean(event_type, catalog.all_types())}",
                )
            ],
        )
    if data is None:
        data = next(t.example for t in event_types.described_types() if t.name == event_type)
    rendered, problems = payloads.check_data(event_type, data)
    if rendered is not None and len(rendered.encode()) > settings.max_event_bytes:
        problems = [
            FieldViolation(
                "data",
                f"{len(rendered.encode())} bytes serialised; the limit is "
                f"{settings.max_event_bytes} bytes",
            )
        ]
    if rendered is None or problems:
        raise InvalidArgument("invalid SendTestEvent request", problems)
    return event_type, rendered


def _store(
    engine: Engine, settings: Settings, event: NewEvent, config_id: str
) -> tuple[Target | None, ClaimedDelivery | None]:
    with publish_transaction(engine) as tx:
        target = tx.target(event.organisation_id, config_id)
        if target is None or not target.enabled or target.waits:
            return target, None
        if event.event_type != PING_TYPE and not catalog.matches_any(
            target.event_types, event.event_type
        ):
            raise InvalidArgument(
                "invalid SendTestEvent request",
                [
                    FieldViolation(
                        "event_type",
                        f"the endpoint does not subscribe to {event.event_type!r} (its event "
                        f"types: {', '.join(target.event_types)}); test a type it receives",
                    )
                ],
            )
        lease = new_lease(event.occurred_at, settings.lease_seconds)
        inserted = tx.insert(
            [PlannedEvent(event, [(target, True)])], now=event.occurred_at, lease=lease
        )
    return target, inserted.handed[0]


async def _send(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    clock: Clock,
    attempt_session: AttemptSession,
    event_type: str = PING_TYPE,
    data: str = "",
) -> LogRow:
    now = clock()
    event_id = new_event_id()
    if event_type == PING_TYPE:
        data = payloads.render_data(PING_TYPE, {"config_id": config_id})  # webhooks.v1.WebhookPing
    payload = build_payload(event_id, event_type, now, data)
    event = NewEvent(organisation_id, event_id, event_type, now, payload)
    target, claimed = await asyncio.to_thread(_store, engine, settings, event, config_id)
    if target is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    if claimed is None and target.waits:
        raise FailedPrecondition(
            f"webhook configuration {config_id} has not proved ownership of its URL yet; "
            "VerifyWebhookEndpoint sends it the challenge"
        )
    if claimed is None:
        raise FailedPrecondition(
            f"webhook configuration {config_id} is disabled; re-enable it with "
            "PutWebhookConfig (enabled: true) to send it a test event"
        )
    async with attempt_session() as attempt:
        finished = await attempt(dataclasses.replace(claimed, retries=False))
    await asyncio.to_thread(
        queue.finish_batch,
        engine,
        [finished],
        now=clock(),
        after_write=operational.after_finish,  # a 410 here disables: tell the others
    )
    return await asyncio.to_thread(_read_log, engine, organisation_id, event_id)


def _read_log(engine: Engine, organisation_id: str, event_id: str) -> LogRow:
    with db.read_transaction(engine) as conn:
        rows = log_store.list_page(
            conn, organisation_id, LogFilters(event_id=event_id), before_id=None, limit=1
        )
    if not rows:
        # Only if the lease was lost (this process stalled): a worker owns it now.
        raise FailedPrecondition(
            f"the test event {event_id} was not recorded in time; see ListDeliveryLogs"
        )
    return rows[0]

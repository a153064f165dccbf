"""SendTestEvent: one signed ``webhook.ping`` to one endpoint, attempted now.

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
  for a poll. The delivery is created already claimed (a lease of the attempt
  timeout plus a margin), so workers leave it alone; if this process dies
  mid-attempt, the lease runs out and a worker delivers it instead
  (at-least-once, as always). The attempt goes through the same transport
  (timeouts, body cap, target guard) and is recorded by the same
  ``queue.finish_batch`` as the worker's.
- **Never retried**: a test answers "does it work now?". Any failure is
  ``failed`` (not ``retry_scheduled``/``dead``); a 410 Gone still disables
  the endpoint, as the delivery rules say.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import operational, payloads
from webhooks_service.core.endpoint_headers import request_headers
from webhooks_service.core.ids import check_config_id
from webhooks_service.core.publishing import build_payload, new_event_id
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import Outcome, RetryPolicy
from webhooks_service.delivery.signing import webhook_headers
from webhooks_service.errors import FailedPrecondition, NotFound
from webhooks_service.storage import db, queue
from webhooks_service.storage import logs as log_store
from webhooks_service.storage import replay as store
from webhooks_service.storage.logs import LogFilters, LogRow
from webhooks_service.storage.models import utcnow

__all__ = ["PING_TYPE", "send_test_event"]

PING_TYPE = "webhook.ping"
# The lease of the test delivery beyond the attempt timeout: time to write the
# rows before the attempt and the result after it.
LEASE_MARGIN_SECONDS = 30.0

Clock = Callable[[], datetime]
TransportFactory = Callable[[Settings], Transport]


async def send_test_event(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    *,
    clock: Clock = utcnow,
    transport_factory: TransportFactory = Transport,
) -> LogRow:
    """Create, attempt and record a ping to ``config_id``; returns the logged attempt.

    The attempt and its recording are shielded from cancellation: a client
    that gives up mid-call does not leave the delivery claimed for a lease.
    """
    check_config_id(config_id)
    task = asyncio.ensure_future(
        _send(engine, settings, organisation_id, config_id, clock, transport_factory)
    )
    return await asyncio.shield(task)


async def _send(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    clock: Clock,
    transport_factory: TransportFactory,
) -> LogRow:
    now = clock()
    event_id = new_event_id()
    data = payloads.render_data(PING_TYPE, {"config_id": config_id})  # webhooks.v1.WebhookPing
    payload = build_payload(event_id, PING_TYPE, now, data)
    token = secrets.token_hex(16)
    target = await asyncio.to_thread(
        store.create_ping,
        engine,
        organisation_id,
        config_id,
        event_id=event_id,
        event_type=PING_TYPE,
        payload=payload,
        now=now,
        claim_token=token,
        default_timeout=settings.attempt_timeout,
        lease_margin=LEASE_MARGIN_SECONDS,
    )
    if target is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    if not target.enabled:
        raise FailedPrecondition(
            f"webhook configuration {config_id} is disabled; re-enable it with "
            "PutWebhookConfig (enabled: true) to send it a test event"
        )
    cipher = cipher_for(settings.secret_key)
    signing = [cipher.open(target.secret)]
    if target.previous_secret:
        signing.append(cipher.open(target.previous_secret))
    body = payload.encode()
    transport = transport_factory(settings)
    await transport.start()
    try:
        started = clock()
        signed = webhook_headers(signing, event_id, int(started.timestamp()), body)
        headers = request_headers(signed, target.headers, cipher.open)  # custom headers
        result = await transport.post(target.url, body, headers, target.timeout_seconds)
    finally:
        await transport.close()
    policy = RetryPolicy(settings.retry_schedule)
    decision = policy.decide(result, policy.max_attempts, clock())
    outcome = Outcome.DELIVERED if decision.outcome is Outcome.DELIVERED else Outcome.FAILED
    finished = queue.FinishedAttempt(
        delivery_id=target.delivery_id,
        claim_token=token,
        attempt=1,
        organisation_id=organisation_id,
        config_id=config_id,
        event_pk=target.event_pk,
        event_id=event_id,
        event_type=PING_TYPE,
        url=target.url,
        outcome=outcome.value,
        attempted_at=started,
        response_status_code=result.status_code,
        response_body=result.response_body,
        response_body_truncated=result.response_body_truncated,
        error=result.error,
        duration_ms=result.duration_ms,
        disable_reason=decision.disabled_reason if decision.disable_endpoint else None,
    )
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

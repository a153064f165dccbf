"""Endpoint ownership: the ``webhook.verification`` challenge and its state.

Opt-in per organisation (``webhooks orgs verification ORG on``; off by
default, see docs/decisions.md). While it is on, a new endpoint, or one
whose URL changes, is ``VerificationStatus.PENDING``: publishing stores its
deliveries parked (``domain.PARKED_UNTIL``, never claimed, never handed
over: they wait, they are not lost) and the test event, retries and replays
refuse it. It becomes ``VERIFIED`` when it answers the challenge:

    POST <endpoint url>                         (signed like every delivery)
    webhook-id: evt_…   webhook-timestamp: …   webhook-signature: v1,… / v1a,…
    {"id": "evt_…", "type": "webhook.verification", "timestamp": "…",
     "data": {"config_id": "whc_…", "challenge": "<43 random characters>"}}

    HTTP/1.1 200 OK                             (any 2xx)
    {"challenge": "<the same 43 characters>"}

in the spirit of the CloudEvents webhook validation handshake (the receiver
shows it expects the traffic by echoing something only the request carried).
Then the parked deliveries become due now, in full. The request goes through
the delivery transport, so the target guard applies (no loopback, private or
metadata address: the challenge cannot be used to probe the network).

The challenge is sent once, in the background, when the endpoint is created
or re-pointed (``api/admin.py``), and whenever an admin asks
(``VerifyWebhookEndpoint``, the portal's "verify again"), which answers the
result. A failed challenge changes nothing but ``verification_error``: a
pending endpoint stays pending, a verified one stays verified, one that is
not required to verify keeps receiving. Challenges share the test event's
per-organisation budget. The challenge is not a delivery: it is not in the
delivery log; its outcome is on the configuration.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import payloads
from webhooks_service.core.event_body import build_payload, new_event_id
from webhooks_service.core.ids import check_config_id
from webhooks_service.core.redelivery import OrgBudgets, default_budgets
from webhooks_service.domain import Clock, VerificationStatus, utcnow
from webhooks_service.errors import FailedPrecondition, NotFound
from webhooks_service.storage import configs as store
from webhooks_service.storage import db
from webhooks_service.storage.configs import ConfigRow

__all__ = [
    "VERIFICATION_TYPE",
    "Answer",
    "Challenge",
    "Sender",
    "VerifyResult",
    "judge",
    "verify_endpoint",
]

VERIFICATION_TYPE = "webhook.verification"
CHALLENGE_BYTES = 32


@dataclass(frozen=True)
class Challenge:
    """One challenge request: to the configuration (stored forms), with this body."""

    config: ConfigRow
    event_id: str
    challenge: str
    payload: str  # the exact JSON body sent


@dataclass(frozen=True)
class Answer:
    """What came back: the HTTP status (0: none), the body read, the transport error."""

    status_code: int
    body: str
    error: str = ""


# Signs and posts a challenge (delivery/verification.py: the delivery
# transport, its guard and timeouts, the endpoint's secrets and custom headers).
Sender = Callable[[Challenge], Awaitable[Answer]]


@dataclass(frozen=True)
class VerifyResult:
    config: ConfigRow  # after the challenge (stored forms)
    verified: bool
    error: str
    released: int  # deliveries that waited and are due now


def judge(answer: Answer, challenge: str) -> str:
    """Why ``answer`` does not prove ownership; "" when it does."""
    if answer.status_code == 0:
        return f"no answer: {answer.error or 'the request failed'}"
    if not 200 <= answer.status_code < 300:
        return f"HTTP {answer.status_code}: the endpoint must answer 2xx"
    try:
        echoed = json.loads(answer.body)
    except ValueError:
        echoed = None
    value = echoed.get("challenge") if isinstance(echoed, dict) else None
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), challenge.encode()):
        return 'the answer did not echo the challenge: answer the JSON {"challenge": "<challenge>"}'
    return ""


def _prepare(engine: Engine, organisation_id: str, config_id: str, clock: Clock) -> Challenge:
    with db.read_transaction(engine) as conn:
        config = store.get(conn, organisation_id, config_id)
    if config is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    if not config.enabled:
        raise FailedPrecondition(
            f"webhook configuration {config_id} is disabled; re-enable it with "
            "PutWebhookConfig (enabled: true) to verify it"
        )
    challenge = secrets.token_urlsafe(CHALLENGE_BYTES)
    event_id = new_event_id()
    data = payloads.render_data(
        VERIFICATION_TYPE, {"config_id": config_id, "challenge": challenge}
    )  # webhooks.v1.WebhookVerification
    payload = build_payload(event_id, VERIFICATION_TYPE, clock(), data)
    return Challenge(config, event_id, challenge, payload)


def _record(
    engine: Engine, challenge: Challenge, error: str, clock: Clock
) -> tuple[ConfigRow, int]:
    config = challenge.config
    now = clock()
    status = VerificationStatus.VERIFIED if not error else config.verification_status
    released = 0
    with db.write_transaction(engine) as conn:
        recorded = store.set_verification(
            conn,
            config.organisation_id,
            config.id,
            url=config.url,  # only if it still points where the challenge went
            status=status,
            error=error,
            verified_at=now if not error else config.verified_at,
        )
        if recorded and not error:
            released = store.unpark_deliveries(conn, config.id, now)
        current = store.get(conn, config.organisation_id, config.id)
    if current is None:
        raise NotFound(f"webhook configuration {config.id!r} not found")
    if not recorded:
        return current, 0
    return replace(current), released


async def verify_endpoint(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    *,
    send: Sender,
    clock: Clock = utcnow,
    budgets: OrgBudgets | None = None,
) -> VerifyResult:
    """Send the challenge to ``config_id`` now and record the result.

    Shielded from cancellation once sent, like the test event: a caller that
    gives up mid-call does not lose a proof the endpoint gave.
    """
    check_config_id(config_id)
    spend = (budgets or default_budgets(settings, engine)).spend_test_event
    await asyncio.to_thread(spend, organisation_id, clock())
    challenge = await asyncio.to_thread(_prepare, engine, organisation_id, config_id, clock)

    async def run() -> VerifyResult:
        answer = await send(challenge)
        error = judge(answer, challenge.challenge)
        config, released = await asyncio.to_thread(_record, engine, challenge, error, clock)
        return VerifyResult(config, not error, error, released)

    return await asyncio.shield(asyncio.ensure_future(run()))

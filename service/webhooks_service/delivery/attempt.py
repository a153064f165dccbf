"""THE attempt: a claimed delivery in, a finished attempt out.

``Attempter.attempt`` is the one place a delivery is sent, for the worker,
the publish hand-off (both through the worker) and the test event
(``core/ping.py``):

1. ``request_for`` builds the request from the delivery and its
   configuration: URL, body (the stored payload, byte for byte), the
   Standard Webhooks headers signed with every secret that signs now
   (``ClaimedDelivery.signing_secrets``: the rotation rule), and the timeout.
   Anything more sent on every attempt (custom headers, tracing) belongs here.
   The attempter opens each stored secret once (``SECRETS_KEPT`` kept), not
   per attempt: with secrets sealed at rest that is an AES-GCM decryption.
2. The transport posts it (``delivery/http.py``: guard, timeouts, body cap).
3. ``RetryPolicy`` decides; the result becomes a ``FinishedAttempt``. A
   delivery that may not be retried (the test event) ends ``failed`` on any
   failure.

A delivery whose endpoint was disabled after it was claimed is finished
without a request (``not_attempted``: ``attempted=False``, ``failed``).
``signal_of`` tells the scheduler what an attempt says about its destination.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from webhooks_service.config import Settings
from webhooks_service.core.endpoint_headers import request_headers, shown_headers
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.http import SESSION_HEADERS, Transport
from webhooks_service.delivery.retry_policy import AttemptResult, ErrorKind, RetryPolicy
from webhooks_service.delivery.scheduler import Signal
from webhooks_service.delivery.signing import webhook_headers
from webhooks_service.domain import (
    ORDERING_KEY_HEADER,
    SEQUENCE_HEADER,
    ClaimedDelivery,
    Clock,
    FinishedAttempt,
    Outcome,
    utcnow,
)
from webhooks_service.observability import tracing

SecretDecoder = Callable[[str], str]

# Opened secrets an attempter keeps (by stored form, so a rotation or a new
# secret is a new entry; the oldest go first).
SECRETS_KEPT = 4096
NOT_ATTEMPTED_ERROR = "endpoint disabled: the delivery was not attempted"
# Statuses that mean "too much, slow down" (besides timeouts and connection errors).
_BACK_PRESSURE = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout_seconds: float | None


def request_for(d: ClaimedDelivery, decode_secret: SecretDecoder, now: datetime) -> Request:
    """The signed request of one attempt of ``d`` made at ``now``."""
    body = d.payload.encode()
    secrets = [decode_secret(s) for s in d.signing_secrets(now)]
    signed = webhook_headers(secrets, d.event_id, int(now.timestamp()), body)
    # the endpoint's custom headers (core/endpoint_headers.py)
    headers = request_headers(signed, d.headers, decode_secret)
    if d.ordering_key is not None:
        headers = {
            **headers,
            ORDERING_KEY_HEADER: d.ordering_key,
            SEQUENCE_HEADER: str(d.sequence or 0),
        }
    return Request(d.url, body, headers, d.timeout_seconds)


def logged_headers(headers: Mapping[str, str]) -> str:
    """The request's headers for the log (``FinishedAttempt.request_headers``): the
    session's, then the request's, shown as ``endpoint_headers.shown_headers`` says."""
    shown = [*SESSION_HEADERS, *shown_headers(headers)]
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False)


def signal_of(result: AttemptResult) -> Signal:
    """What ``result`` says about its destination's capacity (for the scheduler)."""
    if result.status_code == 0:
        if result.error_kind is ErrorKind.TIMEOUT:
            return Signal.TIMEOUT
        if result.error_kind in (ErrorKind.CONNECT, ErrorKind.OTHER):
            return Signal.OVERLOAD
        return Signal.NEUTRAL  # refused by the guard or an invalid URL: no request made
    if result.status_code in _BACK_PRESSURE:
        return Signal.OVERLOAD
    if 200 <= result.status_code < 300:
        return Signal.SUCCESS
    return Signal.NEUTRAL


def finished(
    d: ClaimedDelivery,
    result: AttemptResult,
    attempted_at: datetime,
    policy: RetryPolicy,
    now: datetime,
    sent_headers: str = "",
) -> FinishedAttempt:
    """The record of attempt ``d.attempt`` with ``result``, decided by ``policy``;
    ``sent_headers``: the request's headers as the log shows them (``logged_headers``)."""
    decision = policy.decide(result, d.attempt if d.retries else policy.max_attempts, now)
    outcome = decision.outcome
    if not d.retries and outcome is not Outcome.DELIVERED:
        outcome = Outcome.FAILED
    return FinishedAttempt(
        delivery_id=d.id,
        claim_token=d.claim_token,
        attempt=d.attempt,
        organisation_id=d.organisation_id,
        config_id=d.config_id,
        event_pk=d.event_pk,
        event_id=d.event_id,
        event_type=d.event_type,
        url=d.url,
        outcome=outcome,
        attempted_at=attempted_at,
        next_attempt_at=decision.next_attempt_at if outcome is Outcome.RETRY_SCHEDULED else None,
        response_status_code=result.status_code,
        response_body=result.response_body,
        response_body_truncated=result.response_body_truncated,
        error=result.error,
        duration_ms=result.duration_ms,
        disable_reason=decision.disabled_reason if decision.disable_endpoint else None,
        ordering_key=d.ordering_key,
        request_headers=sent_headers,
        response_headers=(
            json.dumps(result.response_headers, separators=(",", ":"), ensure_ascii=False)
            if result.response_headers
            else ""
        ),
        response_headers_truncated=result.response_headers_truncated,
    )


def not_attempted(d: ClaimedDelivery, now: datetime) -> FinishedAttempt:
    """The record of a delivery finished without a request (endpoint disabled)."""
    return FinishedAttempt(
        delivery_id=d.id,
        claim_token=d.claim_token,
        attempt=d.attempt,
        organisation_id=d.organisation_id,
        config_id=d.config_id,
        event_pk=d.event_pk,
        event_id=d.event_id,
        event_type=d.event_type,
        url=d.url,
        outcome=Outcome.FAILED,
        attempted_at=now,
        attempted=False,
        error=NOT_ATTEMPTED_ERROR,
        ordering_key=d.ordering_key,
    )


@dataclass(frozen=True, slots=True)
class Attempted:
    """A finished attempt, and what it says about its destination."""

    finished: FinishedAttempt
    signal: Signal
    seconds: float


class Attempter:
    """Sends attempts through one transport under one retry policy."""

    def __init__(
        self,
        transport: Transport,
        policy: RetryPolicy,
        decode_secret: SecretDecoder,
        clock: Clock,
    ) -> None:
        self.transport = transport
        self.policy = policy
        self.decode_secret = functools.lru_cache(maxsize=SECRETS_KEPT)(decode_secret)
        self.clock = clock

    async def attempt(self, d: ClaimedDelivery) -> Attempted:
        """Sign, post, decide: whatever happens, a finished attempt (never raises
        for the endpoint's behaviour)."""
        started = self.clock()
        if not d.enabled:
            return Attempted(not_attempted(d, started), Signal.NEUTRAL, 0.0)
        span = tracing.start_attempt(d)  # hook: None while tracing is off
        req = request_for(d, self.decode_secret, started)
        result = await self.transport.post(req.url, req.body, req.headers, req.timeout_seconds)
        sent = logged_headers(req.headers)
        done = finished(d, result, started, self.policy, self.clock(), sent)
        tracing.end_attempt(span, done)
        return Attempted(done, signal_of(result), result.duration_ms / 1000)


@asynccontextmanager
async def attempt_session(
    settings: Settings, *, clock: Clock = utcnow
) -> AsyncIterator[Callable[[ClaimedDelivery], Awaitable[FinishedAttempt]]]:
    """THE attempt function on a transport of its own, for one-off attempts
    outside the worker (the test event): the same signing, guard, timeouts
    and policy."""
    transport = Transport(settings)
    await transport.start()
    attempter = Attempter(
        transport, RetryPolicy(settings.retry_schedule), cipher_for(settings.secret_key).open, clock
    )

    async def attempt(d: ClaimedDelivery) -> FinishedAttempt:
        return (await attempter.attempt(d)).finished

    try:
        yield attempt
    finally:
        await transport.close()

"""THE attempt: a claimed delivery in, a finished attempt out.

``Attempter.attempt`` is the one place a delivery is sent, for the worker,
the publish hand-off (both through the worker) and the test event
(``core/ping.py``):

1. ``request_for`` builds the request from the delivery and its
   configuration: URL, body (the stored payload, byte for byte), the
   Standard Webhooks headers signed with every secret that signs now
   (``ClaimedDelivery.signing_secrets``: the rotation rule), and the timeout.
   Anything more sent on every attempt (custom headers, tracing) belongs here.
   The attempter opens each stored secret and header set once, not per
   attempt (with secrets sealed at rest that is an AES-GCM decryption), and
   keeps them in :class:`OpenedForms`: per configuration and slot, so a
   re-seal replaces its entry instead of adding one, bounded in bytes
   (``OPENED_BYTES``), not entries.
2. The transport posts it (``delivery/http.py``: guard, timeouts, body cap).
3. ``RetryPolicy`` decides; the result becomes a ``FinishedAttempt``. A
   delivery that may not be retried (the test event) ends ``failed`` on any
   failure.

A delivery whose endpoint was disabled after it was claimed is finished
without a request (``not_attempted``: ``attempted=False``, ``failed``).
``signal_of`` tells the scheduler what an attempt says about its destination.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from json import encoder as json_encoder

from webhooks_service.caches import ByteBoundedLRU
from webhooks_service.config import Settings
from webhooks_service.core.endpoint_headers import (
    Headers,
    opened_headers,
    request_headers,
    shown_headers,
)
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

# What an attempter's opened secrets and headers may hold (key, stored form and
# opened form of each entry, counted in characters): 100 configurations with
# 20 headers of 4,096 characters each take about 19 MiB.
OPENED_BYTES = 32 * 2**20
_ENTRY_OVERHEAD = 200  # the tuple, the key, the strings' headers (roughly)
NOT_ATTEMPTED_ERROR = "endpoint disabled: the delivery was not attempted"
# Statuses that mean "too much, slow down" (besides timeouts and connection errors).
_BACK_PRESSURE = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout_seconds: float | None


_Slot = tuple[str, int]  # (configuration id, 0 current secret / 1 previous / 2 headers)


def _entry_bytes(key: _Slot, value: tuple[str, str | Headers]) -> int:
    stored, opened = value
    size = _ENTRY_OVERHEAD + len(key[0]) + len(stored)
    if isinstance(opened, str):
        return size + len(opened)
    return size + sum(len(name) + len(text) + _ENTRY_OVERHEAD for name, text in opened)


class OpenedForms:
    """Stored secrets and custom headers, opened once and kept per configuration.

    Keyed by (configuration, slot), not by the stored text: a Put re-seals the
    headers (a new nonce), and a key by text made every re-seal a new entry.
    An entry is used only while its stored form is still the delivery's.
    """

    def __init__(self, open_: SecretDecoder, max_bytes: int = OPENED_BYTES) -> None:
        self._open = open_
        self.cache: ByteBoundedLRU[_Slot, tuple[str, str | Headers]] = ByteBoundedLRU(
            max_bytes, _entry_bytes
        )

    def secret(self, config_id: str, slot: int, stored: str) -> str:
        hit = self.cache.get((config_id, slot))
        if hit is not None and hit[0] == stored and isinstance(hit[1], str):
            return hit[1]
        opened = self._open(stored)
        self.cache.put((config_id, slot), (stored, opened))
        return opened

    def forget(self, config_id: str) -> None:
        """Drop what is kept of ``config_id`` (deleted: its secret is never used again)."""
        for slot in (0, 1, 2):
            self.cache.pop((config_id, slot))

    def headers(self, config_id: str, stored: str | None) -> Headers:
        if not stored:
            return ()
        hit = self.cache.get((config_id, 2))
        if hit is not None and hit[0] == stored and isinstance(hit[1], tuple):
            return hit[1]
        opened = opened_headers(stored, self._open)
        self.cache.put((config_id, 2), (stored, opened))
        return opened


def request_for(d: ClaimedDelivery, opened: OpenedForms, now: datetime) -> Request:
    """The signed request of one attempt of ``d`` made at ``now``."""
    body = d.payload.encode()
    secrets = [opened.secret(d.config_id, slot, s) for slot, s in enumerate(d.signing_secrets(now))]
    signed = webhook_headers(secrets, d.event_id, int(now.timestamp()), body)
    # the endpoint's custom headers (core/endpoint_headers.py)
    headers = request_headers(signed, opened.headers(d.config_id, d.headers))
    if d.ordering_key is not None:
        headers = {
            **headers,
            ORDERING_KEY_HEADER: d.ordering_key,
            SEQUENCE_HEADER: str(d.sequence or 0),
        }
    return Request(d.url, body, headers, d.timeout_seconds)


def json_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """``pairs`` as the log stores header lists: ``json.dumps(list(pairs),
    separators=(",", ":"), ensure_ascii=False)``, with json's own string encoder
    (the same bytes; json.dumps makes an encoder per call, 2-3x the time)."""
    return "[" + ",".join([f"[{_string(name)},{_string(value)}]" for name, value in pairs]) + "]"


_string = json_encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses
_SESSION_LOGGED = json_pairs(SESSION_HEADERS)[:-1]  # "[[..],[..]" : then the request's


def logged_headers(headers: Mapping[str, str]) -> str:
    """The request's headers for the log (``FinishedAttempt.request_headers``): the
    session's, then the request's, shown as ``endpoint_headers.shown_headers`` says."""
    shown = shown_headers(headers)
    return f"{_SESSION_LOGGED},{json_pairs(shown)[1:]}" if shown else _SESSION_LOGGED + "]"


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
        response_headers=json_pairs(result.response_headers) if result.response_headers else "",
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
        self.opened = OpenedForms(decode_secret)
        self.clock = clock

    async def attempt(self, d: ClaimedDelivery) -> Attempted:
        """Sign, post, decide: whatever happens, a finished attempt (never raises
        for the endpoint's behaviour)."""
        started = self.clock()
        if not d.enabled:
            return Attempted(not_attempted(d, started), Signal.NEUTRAL, 0.0)
        span = tracing.start_attempt(d)  # hook: None while tracing is off
        req = request_for(d, self.opened, started)
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

"""What the clients return: frozen dataclasses, Python enums and ``datetime``.

The generated protobuf messages (``webhooks.v1.*_pb2``) stay the wire
format; callers get these instead, so that a log entry prints as
``delivered`` rather than ``1`` and a timestamp is a timezone-aware
``datetime`` (UTC) or ``None`` when the service left it unset.

Field names are the proto field names, so the REST JSON, the proto
comments and these classes describe the same things. Enums are
:class:`enum.IntEnum` over the proto numbers (``DeliveryOutcome.DELIVERED ==
admin_pb2.OUTCOME_DELIVERED``) whose ``str()`` is the lowercase name the
client's filters accept (``outcome="delivered"``). The conversion from the
messages lives in :mod:`webhooks_client._convert`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "DeleteWebhookConfigResult",
    "Delivery",
    "DeliveryLog",
    "DeliveryLogPage",
    "DeliveryOutcome",
    "DeliveryStatus",
    "EndpointHealth",
    "EndpointStats",
    "EventDelivery",
    "EventTypeDefinition",
    "EventView",
    "PortalSession",
    "PublishResult",
    "PutWebhookConfigResult",
    "RetryDeliveryResult",
    "RotateWebhookSecretResult",
    "SigningScheme",
    "StatsBucket",
    "VerificationStatus",
    "VerifyWebhookEndpointResult",
    "WebhookConfig",
]


class _NamedIntEnum(enum.IntEnum):
    """An IntEnum that prints as its lowercase name (``delivered``), not its number."""

    def __str__(self) -> str:
        return self.name.lower()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class DeliveryOutcome(_NamedIntEnum):
    """The result of one delivery attempt (proto ``webhooks.v1.Outcome``)."""

    UNSPECIFIED = 0
    DELIVERED = 1  # the endpoint answered 2xx
    RETRY_SCHEDULED = 2  # failed; another attempt at ``next_attempt_at``
    FAILED = 3  # failed for good (4xx other than 408/429, refused target)
    DEAD = 4  # failed, and it was the last attempt the retry schedule allows
    CANCELLED = 5  # not sent: the configuration was deleted while it was pending


class DeliveryStatus(_NamedIntEnum):
    """Where a delivery (one event to one endpoint) stands (``webhooks.v1.DeliveryStatus``)."""

    UNSPECIFIED = 0
    PENDING = 1
    DELIVERED = 2
    FAILED = 3
    DEAD = 4
    CANCELLED = 5  # its configuration was deleted before it ended


class SigningScheme(_NamedIntEnum):
    """How an endpoint's deliveries are signed (``webhooks.v1.SigningScheme``)."""

    UNSPECIFIED = 0  # in a request: keep the current scheme (HMAC on create)
    HMAC_SHA256 = 1  # v1, the shared whsec_ secret
    ED25519 = 2  # v1a, verified with public_key or the organisation's key set


class VerificationStatus(_NamedIntEnum):
    """Whether an endpoint proved it wants the traffic (``webhooks.v1.VerificationStatus``)."""

    UNSPECIFIED = 0
    NOT_REQUIRED = 1  # its organisation does not require it
    PENDING = 2  # deliveries wait until it echoes the challenge
    VERIFIED = 3


@dataclass(frozen=True)
class EndpointHealth:
    """Delivery attempt counters of one endpoint, and its latest success and error."""

    attempts: int = 0
    successes: int = 0
    failures: int = 0
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class WebhookConfig:
    """A webhook endpoint of the organisation (the secret itself is never returned)."""

    id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    description: str
    secret_hint: str
    created_at: datetime | None
    updated_at: datetime | None
    disabled_reason: str = ""
    health: EndpointHealth = field(default_factory=EndpointHealth)
    # Names of the custom request headers sent on every attempt (values never returned).
    header_names: tuple[str, ...] = ()
    # Ordered delivery per ordering key (events sharing a key: one at a time, in order).
    ordered: bool = False
    signing_scheme: SigningScheme = SigningScheme.HMAC_SHA256
    public_key: str = ""  # ed25519: whpk_…, the key receivers verify v1a with
    public_key_id: str = ""  # its kid in the key set (and in webhook-key-id)
    verification_status: VerificationStatus = VerificationStatus.NOT_REQUIRED
    verification_error: str = ""  # why the latest ownership challenge failed
    # The payload filter (a CEL expression); "" when the endpoint gets every event.
    filter: str = ""


@dataclass(frozen=True)
class VerifyWebhookEndpointResult:
    """The configuration after the ownership challenge; ``error`` says why not verified."""

    config: WebhookConfig
    verified: bool
    error: str


@dataclass(frozen=True)
class FilterMatch:
    """A recent event a payload filter accepts (TestWebhookFilter)."""

    event_id: str
    event_type: str
    occurred_at: datetime | None


@dataclass(frozen=True)
class FilterTestResult:
    """A payload filter tried on the organisation's recent events (and an example)."""

    examined: int
    matched: int
    matches: tuple[FilterMatch, ...]
    errors: int
    example_matches: bool | None  # None when no example was given
    example_error: str = ""


@dataclass(frozen=True)
class PutWebhookConfigResult:
    """``config`` as stored; ``secret`` only when the server generated it in this call
    (store it now: it is never shown again); ``created`` for a new configuration."""

    config: WebhookConfig
    secret: str
    created: bool


@dataclass(frozen=True)
class DeleteWebhookConfigResult:
    """How many pending deliveries the deletion cancelled (``cancelled`` in the log)."""

    cancelled_deliveries: int


@dataclass(frozen=True)
class DeliveryLog:
    """One delivery attempt: what was sent, where, and what came back."""

    id: str
    event_id: str
    event_type: str
    config_id: str
    delivery_id: str
    attempt: int
    url: str
    request_body: str
    response_status_code: int  # 0 when no response was received
    response_body: str
    response_body_truncated: bool
    error: str  # why the attempt failed without a usable response; "" otherwise
    duration_ms: int
    outcome: DeliveryOutcome
    attempted_at: datetime | None
    next_attempt_at: datetime | None  # set only for DeliveryOutcome.RETRY_SCHEDULED
    ordering_key: str = ""  # the event's ordering key ("" without one)
    sequence: int = 0  # its number for (organisation, ordering key); 0 without a key
    # (name, value) in order, the FULL view only: request headers as sent (signatures
    # shortened, secret-looking values masked) and response headers (capped).
    request_headers: tuple[tuple[str, str], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    response_headers_truncated: bool = False
    endpoint_deleted: bool = False  # the endpoint was deleted since; ``url`` names it


@dataclass(frozen=True)
class DeliveryLogPage:
    """One page of the delivery log, newest first; pass ``next_page_token`` back (with
    the same filters) for the next page; empty on the last one."""

    logs: tuple[DeliveryLog, ...]
    next_page_token: str


@dataclass(frozen=True)
class Delivery:
    """One event to one endpoint: the unit the workers attempt and retry."""

    id: str
    event_id: str
    event_type: str
    config_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    ordering_key: str = ""
    sequence: int = 0
    waiting_for_turn: bool = False  # pending behind an earlier delivery of its key


@dataclass(frozen=True)
class EventDelivery:
    """One event to one endpoint, within :class:`EventView`: the delivery, the endpoint's
    URL (the one it had when deleted, with ``endpoint_deleted``) and its latest attempts
    (newest first, at most 20, without bodies or headers)."""

    delivery: Delivery
    url: str
    endpoint_deleted: bool
    attempts: tuple[DeliveryLog, ...]


@dataclass(frozen=True)
class EventView:
    """One event (GetEvent): its type, times, the exact JSON body every endpoint
    received, and each endpoint's delivery of it, oldest delivery first."""

    event_id: str
    event_type: str
    occurred_at: datetime | None
    created_at: datetime | None
    payload: str
    deliveries: tuple[EventDelivery, ...]


@dataclass(frozen=True)
class StatsBucket:
    """One hour of an endpoint's HTTP attempts (test events included)."""

    start: datetime | None
    attempts: int
    failures: int  # non-2xx, timeout, connection error


@dataclass(frozen=True)
class EndpointStats:
    """An endpoint's last 24 hours (GetEndpointStats): 24 hourly buckets, oldest first,
    their totals, and latency percentiles estimated from a histogram (0 without
    attempts)."""

    since: datetime | None
    until: datetime | None
    buckets: tuple[StatsBucket, ...]
    attempts: int
    failures: int
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int


@dataclass(frozen=True)
class RetryDeliveryResult:
    """The delivery after the call; ``scheduled`` is False when it was already due."""

    delivery: Delivery
    scheduled: bool


@dataclass(frozen=True)
class RotateWebhookSecretResult:
    """``secret`` only when generated by this call; the previous secret keeps signing
    until ``previous_secret_expires_at`` (None: it stopped at once)."""

    config: WebhookConfig
    secret: str
    previous_secret_expires_at: datetime | None


@dataclass(frozen=True)
class EventTypeDefinition:
    """One type of the event catalog: ``schema`` is the JSON Schema (draft 2020-12)
    of the delivered ``data`` and ``example`` a valid ``data``, both as dicts."""

    name: str
    category: str
    description: str
    schema: dict[str, Any]
    example: dict[str, Any]


@dataclass(frozen=True)
class PortalSession:
    """A dashboard session (CreatePortalSession): ``url`` opens the dashboard signed
    in; ``token`` (``wpt_…``) is shown only here; ``session_id`` revokes it."""

    url: str
    expires_at: datetime
    token: str
    session_id: str
    organisation_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class PublishResult:
    """``deliveries``: endpoints the event was queued for; ``duplicate``: this event id
    was already published for the organisation (nothing new was queued)."""

    event_id: str
    deliveries: int
    duplicate: bool

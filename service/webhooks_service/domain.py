"""The delivery domain: the records and vocabulary every layer shares.

Storage persists and reads these records, the delivery worker, the test event
and the publish hand-off produce and consume them, the API converts them to
protos; none of them re-lists the vocabulary. Nothing here does I/O, and this
module imports nothing of the service, so every package may import it.

- ``Outcome`` (of one attempt) and ``DeliveryStatus`` (of a delivery), with
  ``STATUS_AFTER`` mapping the first onto the second. ``DeliveryStatus`` has
  room for more end states (a delivery stopped without an attempt, e.g. of a
  deleted configuration): add a member and, if it ends a delivery, put it in
  ``ENDED``.
- ``ClaimedDelivery``: a delivery held under a lease with everything needed to
  send it; ``FinishedAttempt``: its attempt and the decision, ready to be
  recorded. ``attempted`` is explicit: a delivery finished without a request
  (its endpoint was disabled meanwhile) is not an attempt.
- ``previous_secret_signs``: THE rotation-grace rule (current secret, plus the
  previous one until it expires), and ``Destination``: where a request goes
  (scheme, host, port), the key of the scheduler's per-destination limits.
- ``utcnow`` / ``Clock``: the one clock, injectable in tests.
"""

from __future__ import annotations

import enum
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Outcome(enum.StrEnum):
    """The outcome of one attempt (``delivery_attempts.outcome``)."""

    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"  # not attempted: its configuration was deleted


class StatusClass(enum.StrEnum):
    """A class of HTTP response status codes (the log's ``status_class`` filter):
    the value is the proto name's suffix in lower case (STATUS_CLASS_2XX -> "2xx")."""

    HTTP_2XX = "2xx"
    HTTP_3XX = "3xx"
    HTTP_4XX = "4xx"
    HTTP_5XX = "5xx"
    NO_RESPONSE = "no_response"  # response_status_code 0: no response received

    @property
    def hundreds(self) -> int:
        """``response_status_code // 100`` of the codes of this class (0: no response)."""
        return 0 if self is StatusClass.NO_RESPONSE else int(self.value[0])


class DeliveryStatus(enum.StrEnum):
    """The state of one delivery (``deliveries.status``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"  # stopped: its configuration was deleted (never revived)


# A delivery's status after an attempt with each outcome.
STATUS_AFTER: dict[Outcome, DeliveryStatus] = {
    Outcome.DELIVERED: DeliveryStatus.DELIVERED,
    Outcome.RETRY_SCHEDULED: DeliveryStatus.PENDING,
    Outcome.FAILED: DeliveryStatus.FAILED,
    Outcome.DEAD: DeliveryStatus.DEAD,
    Outcome.CANCELLED: DeliveryStatus.CANCELLED,
}
# Statuses a delivery does not leave by itself (only an admin's retry or replay;
# a cancelled delivery is not revived).
ENDED = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.DEAD})


# The two sentinels of deliveries.next_attempt_at, defined here only (storage
# renders them per backend from these). Both lie after every real due time, so
# the claim query's range (next_attempt_at <= now) never reaches them: the
# claim neither takes nor scans such a delivery. PARKED_UNTIL < HELD_UNTIL, and
# the queries rely on it ("parked" is PARKED_UNTIL <= t < HELD_UNTIL).
#
# Parked: waiting for the endpoint's ownership verification; verification
# makes them due now (storage/configs.py).
PARKED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
# Held, for ordered delivery per key (issue 22, docs/reliability.md): a pending
# delivery of an ordered endpoint that waits behind an earlier delivery of its
# ordering key. When the key's active delivery ends, the next one in sequence
# order is promoted (storage/ordering.py). At most one delivery per
# (configuration, key) is ever not held.
HELD_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)
MAX_ORDERING_KEY = 128  # characters
ORDERING_KEY_HEADER = "webhook-ordering-key"
SEQUENCE_HEADER = "webhook-sequence"


def is_held(next_attempt_at: datetime) -> bool:
    """Whether a pending delivery waits for its turn behind its key's head."""
    return next_attempt_at >= HELD_UNTIL


class SigningScheme(enum.StrEnum):
    """How an endpoint's deliveries are signed (``webhook_configs.signing_scheme``)."""

    HMAC_SHA256 = "hmac_sha256"  # Standard Webhooks v1, a shared whsec_ secret (the default)
    ED25519 = "ed25519"  # Standard Webhooks v1a, a whsk_ key held by the service


class VerificationStatus(enum.StrEnum):
    """Whether an endpoint proved it wants the traffic (``webhook_configs.verification_status``)."""

    NOT_REQUIRED = "not_required"  # its organisation does not require ownership verification
    PENDING = "pending"  # deliveries wait until the endpoint echoes a challenge
    VERIFIED = "verified"  # it echoed the challenge for its current URL


def previous_secret_signs(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a replaced secret still signs at ``now`` (None: until it is cleared)."""
    return expires_at is None or expires_at > now


class Destination(NamedTuple):
    """Where requests go: one scheme, host and port (many configurations may share it).

    A named tuple: the scheduler hashes destinations on every start and finish,
    and a tuple hashes and compares in C."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Destination:
        return _destination_of(url)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def _destination_of(url: str) -> Destination:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        return Destination(scheme, (parts.hostname or "").lower(), port)
    except ValueError:
        return Destination("", url, 0)  # unparseable: its own destination; the attempt fails


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim: the token stamped on the rows and when the lease runs out."""

    token: str
    until: datetime


def new_lease(now: datetime, lease_seconds: float) -> Lease:
    return Lease(secrets.token_hex(16), now + timedelta(seconds=lease_seconds))


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery held under a lease, with what it needs to be sent."""

    id: int
    claim_token: str
    attempt: int  # number of the attempt about to be made (1-based)
    organisation_id: str
    config_id: str
    event_pk: int
    event_id: str
    event_type: str
    payload: str
    url: str
    secret: str  # stored form (maybe sealed at rest)
    previous_secret: str | None  # stored form; signs while previous_secret_signs(...)
    previous_secret_expires_at: datetime | None
    timeout_seconds: float | None
    enabled: bool
    lease_until: datetime
    retries: bool = True  # False: one attempt only (the test event)
    headers: str | None = None  # the endpoint's custom request headers, stored form
    traceparent: str | None = None  # the publish span's, while tracing is on
    ordering_key: str | None = None  # the event's (issue 22), sent as a header
    sequence: int | None = None  # per (organisation, ordering key), with the key
    destination: Destination = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "destination", Destination.of(self.url))

    def signing_secrets(self, now: datetime) -> list[str]:
        """The stored secrets that sign an attempt made at ``now``, current first."""
        if self.previous_secret and previous_secret_signs(self.previous_secret_expires_at, now):
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True, slots=True)
class FinishedAttempt:
    """One attempt's result and decided outcome, ready to be recorded."""

    delivery_id: int
    claim_token: str
    attempt: int
    organisation_id: str
    config_id: str
    event_pk: int
    event_id: str
    event_type: str
    url: str
    outcome: Outcome
    attempted_at: datetime
    attempted: bool = True  # False: finished without a request (endpoint disabled)
    next_attempt_at: datetime | None = None
    response_status_code: int = 0
    response_body: str = ""
    response_body_truncated: bool = False
    error: str = ""
    duration_ms: int = 0
    disable_reason: str | None = None  # set: also disable the endpoint
    # The event's ordering key: when this attempt ends the delivery and the
    # endpoint is ordered, the key's next delivery is promoted (issue 22).
    ordering_key: str | None = None
    # JSON lists of [name, value] (storage keeps them as text): the request headers
    # as shown in the log, the response headers up to their cap.
    request_headers: str = ""
    response_headers: str = ""
    response_headers_truncated: bool = False

    @property
    def status(self) -> DeliveryStatus:
        """The delivery's status once this attempt is recorded."""
        return STATUS_AFTER[self.outcome]

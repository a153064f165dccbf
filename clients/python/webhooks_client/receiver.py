"""Verify (and, for receivers' tests, produce) Standard Webhooks signatures.

The service signs every delivery the Standard Webhooks way (standardwebhooks.com):

    webhook-id:        the event id (the same on every retry: it is the dedupe key)
    webhook-timestamp: Unix seconds of this attempt
    webhook-signature: space-separated "v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>"

where the key is the base64 part of the endpoint's ``whsec_...`` secret. During a
secret rotation the service signs with both secrets, so the header carries two
``v1`` entries and a receiver holding either secret accepts the request; a
receiver that is itself rotating passes a list of secrets. Entries of other
versions (e.g. a future asymmetric ``v1a``) are ignored, as the spec asks.
Svix's ``svix-id`` / ``svix-timestamp`` / ``svix-signature`` header names are
accepted too, so a receiver written for Svix works unchanged.

Why verify over the raw body bytes: the HMAC covers the exact bytes sent, and
re-serialising parsed JSON (key order, spacing, number formats) would break it.
Why a timestamp tolerance: without it a captured request could be replayed
forever; with it, only within the window, where the event-id dedupe catches it.

Ordered delivery: a delivery of an event published with an ordering key also
carries ``webhook-ordering-key`` (the key) and ``webhook-sequence`` (1, 2, 3, …
per organisation and key, in the order the service accepted the events).
``ordering(headers)`` reads them; ``SequenceCheck`` tells a receiver whether a
delivery is the next of its key, a redelivery of one already seen (a retry or
a replay: same ``webhook-id``, lower number), or comes after a gap.

This module is self-contained (stdlib only): it must not import the service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

__all__ = [
    "DEFAULT_TOLERANCE",
    "Ordering",
    "Secret",
    "Secrets",
    "SequenceCheck",
    "WebhookVerificationError",
    "event_id",
    "ordering",
    "sign",
    "signed_headers",
    "verify",
]

DEFAULT_TOLERANCE = timedelta(minutes=5)
SECRET_PREFIX = "whsec_"
_SIGNATURE_VERSION = "v1"

Secret = str | bytes
"""A ``whsec_<base64>`` string (the prefix is optional), or the raw key bytes."""
Secrets = Secret | Sequence[Secret]
"""One secret, or several while a rotation is in progress (any one may match)."""


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh delivery: answer it with a 4xx, do no work.

    Raised for missing or malformed headers, a timestamp outside the tolerance,
    no matching ``v1`` signature, or a body that is not a JSON object.
    A malformed *secret* is a configuration error and raises ``ValueError``
    instead, so that it surfaces as a 5xx (the sender retries) rather than
    silently rejecting every delivery.
    """


class HeaderSource(Protocol):
    """Anything with ``items()`` of (name, value): dict, Starlette/werkzeug headers."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def _decode_secret(secret: Secret) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError("webhook secret is not whsec_ followed by base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _decode_secrets(secrets: Secrets) -> list[bytes]:
    if isinstance(secrets, str | bytes):
        return [_decode_secret(secrets)]
    keys = [_decode_secret(s) for s in secrets]
    if not keys:
        raise ValueError("no webhook secret given")
    return keys


def _to_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body)
    return hmac.new(key, signed, hashlib.sha256).digest()


def _unix_seconds(timestamp: int | datetime) -> int:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return int(timestamp.timestamp())
    return int(timestamp)


def sign(secret: Secrets, msg_id: str, timestamp: int | datetime, body: bytes | str) -> str:
    """The ``webhook-signature`` header value for this message.

    With several secrets (a rotation) the value lists one ``v1,`` entry per
    secret, space-separated, exactly as the service sends it.
    """
    ts = str(_unix_seconds(timestamp))
    raw = _to_bytes(body)
    return " ".join(
        f"{_SIGNATURE_VERSION},{base64.b64encode(_signature(key, msg_id, ts, raw)).decode()}"
        for key in _decode_secrets(secret)
    )


def signed_headers(
    secret: Secrets,
    body: bytes | str,
    *,
    msg_id: str | None = None,
    timestamp: int | datetime | None = None,
) -> dict[str, str]:
    """The three headers a genuine delivery of ``body`` carries (for receivers' tests).

    ``msg_id`` defaults to a random ``msg_...`` id, ``timestamp`` to now.
    """
    msg_id = msg_id or f"msg_{_secrets.token_urlsafe(16)}"
    ts = _unix_seconds(timestamp if timestamp is not None else datetime.now(UTC))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def _lowered(headers: HeaderSource) -> dict[str, str]:
    # Repeated headers (possible with some proxies) are joined the way HTTP joins
    # list headers; for webhook-signature that keeps every entry.
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]} {value}" if key in out else value
    return out


def _pick(headers: dict[str, str], name: str) -> str:
    value = headers.get(f"webhook-{name}") or headers.get(f"svix-{name}")
    if not value:
        raise WebhookVerificationError(f"missing webhook-{name} header")
    return value.strip()


def event_id(headers: HeaderSource) -> str:
    """The ``webhook-id`` (or ``svix-id``) header: the event id, stable across retries."""
    return _pick(_lowered(headers), "id")


ORDERING_KEY_HEADER = "webhook-ordering-key"
SEQUENCE_HEADER = "webhook-sequence"


class Ordering(NamedTuple):
    """Where a delivery stands in its key's order."""

    key: str
    sequence: int


def ordering(headers: HeaderSource) -> Ordering | None:
    """The ``webhook-ordering-key`` and ``webhook-sequence`` of a delivery; None when
    the event has no ordering key. Raises WebhookVerificationError for a key
    without a valid sequence number."""
    lowered = _lowered(headers)
    key = lowered.get(ORDERING_KEY_HEADER, "").strip()
    if not key:
        return None
    value = lowered.get(SEQUENCE_HEADER, "").strip()
    if not value.isascii() or not value.isdigit():
        raise WebhookVerificationError(f"{SEQUENCE_HEADER} is not a positive integer")
    return Ordering(key, int(value))


class SequenceCheck:
    """The last sequence number seen per ordering key, for a receiver that wants
    to know whether deliveries arrive in order (in memory: persist ``last`` with
    your data if it must survive a restart).

    ``check`` answers ``"next"`` (the number after the last one, or the first
    seen), ``"seen"`` (at or below the last one: a redelivery — a retry, a
    replay — of an event you may already have applied) or ``"gap"`` (numbers
    were skipped: e.g. the endpoint was created or made ordered after the key's
    first events, or those events did not match its types)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def check(self, position: Ordering) -> str:
        last = self.last.get(position.key)
        if last is not None and position.sequence <= last:
            return "seen"
        self.last[position.key] = position.sequence
        return "next" if last is None or position.sequence == last + 1 else "gap"


def _check_timestamp(value: str, tolerance: timedelta, now: datetime) -> None:
    if not value.isascii() or not value.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds")
    skew = now.timestamp() - int(value)
    if skew > tolerance.total_seconds():
        raise WebhookVerificationError("webhook-timestamp is too old")
    if -skew > tolerance.total_seconds():
        raise WebhookVerificationError("webhook-timestamp is in the future")


def _candidate_signatures(header: str) -> list[bytes]:
    found: list[bytes] = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if not sep or version != _SIGNATURE_VERSION:
            continue  # other schemes (v1a, future versions) are not ours to judge
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found


def verify(
    secret: Secrets,
    headers: HeaderSource,
    body: bytes | str,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check that ``body`` is a genuine, fresh delivery and return it parsed.

    ``body`` must be the raw request bytes, before any JSON parsing.
    ``secret`` may be a list (any one matching passes); every provided ``v1``
    signature is compared against every secret in constant time.
    Raises WebhookVerificationError when the request must be rejected.
    """
    keys = _decode_secrets(secret)
    lowered = _lowered(headers)
    msg_id = _pick(lowered, "id")
    timestamp = _pick(lowered, "timestamp")
    provided = _candidate_signatures(_pick(lowered, "signature"))
    _check_timestamp(timestamp, tolerance, now or datetime.now(UTC))

    raw = _to_bytes(body)
    matched = False
    for key in keys:
        expected = _signature(key, msg_id, timestamp, raw)
        for candidate in provided:
            # No early exit: the time taken does not depend on which entry matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError("no matching v1 signature")

    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookVerificationError("body is not a JSON object")
    return payload

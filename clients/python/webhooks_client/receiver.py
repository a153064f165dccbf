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

Asymmetric signatures (Standard Webhooks ``v1a``): an endpoint on the ed25519
scheme is signed ``v1a,<base64 ed25519 signature>`` over the same content, and
the request names the signing keys' ids in ``webhook-key-id``. Verify it with
the endpoint's public key (``whpk_…``, answered by ``ListWebhookConfigs``) or
with the organisation's published key set (:class:`KeySet`, which fetches
``/webhooks/orgs/{org}/jwks.json``, caches it, and refetches on an unknown
kid at most once per ``min_refresh_seconds``). Public keys, secrets and key
sets mix freely in the ``secret`` argument: any one matching passes. ``v1a``
needs the ``cryptography`` package (``pip install webhooks-client[ed25519]``);
everything else here is the standard library.

Ordered delivery: a delivery of an event published with an ordering key also
carries ``webhook-ordering-key`` (the key) and ``webhook-sequence`` (1, 2, 3, …
per organisation and key, in the order the service accepted the events).
``ordering(headers)`` reads them; ``SequenceCheck`` tells a receiver whether a
delivery is the next of its key, a redelivery of one already seen (a retry or
a replay: same ``webhook-id``, lower number), or comes after a gap.

This module is self-contained: it must not import the service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets as _secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeAlias

__all__ = [
    "DEFAULT_TOLERANCE",
    "KeySet",
    "Ordering",
    "Secret",
    "Secrets",
    "SequenceCheck",
    "WebhookVerificationError",
    "challenge_answer",
    "event_id",
    "ordering",
    "sign",
    "signed_headers",
    "verification_answer",
    "verify",
]

DEFAULT_TOLERANCE = timedelta(minutes=5)
SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
_SIGNATURE_VERSION = "v1"
_ASYMMETRIC_VERSION = "v1a"
KEY_ID_HEADER = "webhook-key-id"

Secret = str | bytes
"""A ``whsec_<base64>`` string (the prefix is optional), the raw HMAC key bytes,
or an ed25519 public key ``whpk_<base64>``."""
Secrets: TypeAlias = "Secret | KeySet | Sequence[Secret | KeySet]"
"""One secret, public key or key set, or several while a rotation is in
progress (any one may match)."""


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
    hmac_keys, public, sets = _split(secrets)
    if public or sets:
        raise ValueError("signing needs whsec_ secrets (public keys only verify)")
    return hmac_keys


def _public_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook public key is not whpk_ followed by base64") from exc
    if len(raw) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return raw


def _split(secrets: Secrets) -> tuple[list[bytes], list[bytes], list[KeySet]]:
    """(HMAC keys, raw ed25519 public keys, key sets) of the ``secret`` argument."""
    items: Sequence[Secret | KeySet] = (
        [secrets] if isinstance(secrets, str | bytes | KeySet) else secrets
    )
    hmac_keys: list[bytes] = []
    public: list[bytes] = []
    sets: list[KeySet] = []
    for item in items:
        if isinstance(item, KeySet):
            sets.append(item)
        elif isinstance(item, str) and item.startswith(PUBLIC_KEY_PREFIX):
            public.append(_public_key(item))
        else:
            hmac_keys.append(_decode_secret(item))
    if not (hmac_keys or public or sets):
        raise ValueError("no webhook secret given")
    return hmac_keys, public, sets


def _ed25519_verifies(public: bytes, signature: bytes, signed: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # pragma: no cover - an installation problem
        raise ValueError(
            "verifying v1a signatures needs the cryptography package "
            "(pip install webhooks-client[ed25519])"
        ) from exc
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fetch(url: str) -> tuple[bytes, str]:
    """GET ``url``: (body up to 1 MiB, Cache-Control header)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(1 << 20), response.headers.get("cache-control", "")


class KeySet:
    """An organisation's published ed25519 keys (the JWKS), cached.

    ``KeySet("https://webhooks.example.com/webhooks/orgs/org_…/jwks.json")``.
    The set is kept for its ``Cache-Control`` max-age (at most
    ``max_age_seconds``); a kid that is not in it (a key minted after the
    last fetch) triggers a refetch, at most once per ``min_refresh_seconds``,
    so a flood of requests naming unknown kids cannot make the receiver
    hammer the service. Thread-safe. ``fetch`` replaces the HTTP GET (tests).
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_seconds: float = 10.0,
        max_age_seconds: float = 3600.0,
        fetch: Callable[[str], tuple[bytes, str]] = _fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._fetched_at: float | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def _load(self, now: float) -> None:
        body, cache_control = self._fetch(self.url)
        self.fetches += 1
        self._fetched_at = now
        document = json.loads(body)
        keys: dict[str, bytes] = {}
        for key in document.get("keys", []) if isinstance(document, dict) else []:
            if (
                isinstance(key, dict)
                and key.get("kty") == "OKP"
                and key.get("crv") == "Ed25519"
                and isinstance(key.get("kid"), str)
                and isinstance(key.get("x"), str)
            ):
                keys[key["kid"]] = _b64url(key["x"])
        self._keys = keys
        match = re.search(r"max-age=(\d+)", cache_control)
        age = min(float(match.group(1)), self.max_age_seconds) if match else self.max_age_seconds
        self._expires_at = now + age

    def public_keys(self, kids: Sequence[str]) -> list[bytes]:
        """The raw public keys of ``kids`` that the set holds (refetched if needed)."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now >= self._expires_at
            unknown = any(k not in self._keys for k in kids)
            may_refresh = (
                self._fetched_at is None or now - self._fetched_at >= self.min_refresh_seconds
            )
            if stale or (unknown and may_refresh):
                try:
                    self._load(now)
                except (OSError, ValueError):
                    if self._fetched_at is None:
                        raise
                    # keep what we had; the next request may try again
                    self._fetched_at = now
            return [self._keys[k] for k in kids if k in self._keys]


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


def _candidate_signatures(header: str, scheme: str = _SIGNATURE_VERSION) -> list[bytes]:
    found: list[bytes] = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if not sep or version != scheme:
            continue  # other schemes (future versions) are not ours to judge
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
    ``secret`` may be a list (any one matching passes): ``whsec_`` secrets
    check the ``v1`` entries (every provided signature against every secret
    in constant time), ``whpk_`` public keys and :class:`KeySet` objects the
    ``v1a`` ones (a key set contributes the keys named in ``webhook-key-id``).
    Raises WebhookVerificationError when the request must be rejected.
    """
    keys, public, sets = _split(secret)
    lowered = _lowered(headers)
    msg_id = _pick(lowered, "id")
    timestamp = _pick(lowered, "timestamp")
    header = _pick(lowered, "signature")
    _check_timestamp(timestamp, tolerance, now or datetime.now(UTC))

    raw = _to_bytes(body)
    matched = False
    provided = _candidate_signatures(header)
    for key in keys:
        expected = _signature(key, msg_id, timestamp, raw)
        for candidate in provided:
            # No early exit: the time taken does not depend on which entry matched.
            matched |= hmac.compare_digest(expected, candidate)
    asymmetric = _candidate_signatures(header, _ASYMMETRIC_VERSION)
    if not matched and (public or sets) and asymmetric:
        kids = lowered.get(KEY_ID_HEADER, "").split()[:8]
        for key_set in sets:
            public = public + key_set.public_keys(kids)
        signed = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), raw)
        matched = any(_ed25519_verifies(k, sig, signed) for k in public for sig in asymmetric)
    if not matched:
        raise WebhookVerificationError("no matching v1 or v1a signature")

    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookVerificationError("body is not a JSON object")
    return payload


VERIFICATION_TYPE = "webhook.verification"


def verification_answer(
    secret: Secrets,
    headers: HeaderSource,
    body: bytes | str,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> bytes | None:
    """The answer to the service's ownership challenge, or None for any other event.

    The service sends a signed ``webhook.verification`` event before an
    endpoint of an organisation that requires it receives anything else;
    answering 2xx with this body (``{"challenge": "<the challenge>"}``,
    ``content-type: application/json``) proves the endpoint wants the
    traffic. The request is verified first (WebhookVerificationError if it
    is not genuine), so nobody else can make the endpoint "agree".
    """
    return challenge_answer(verify(secret, headers, body, tolerance=tolerance, now=now))


def challenge_answer(event: dict[str, Any]) -> bytes | None:
    """The answer body to an already verified event if it is the ownership
    challenge (``webhook.verification``); None for any other event."""
    if event.get("type") != VERIFICATION_TYPE:
        return None
    data = event.get("data")
    challenge = data.get("challenge") if isinstance(data, dict) else None
    if not isinstance(challenge, str):
        raise WebhookVerificationError("webhook.verification without a challenge")
    return json.dumps({"challenge": challenge}).encode()

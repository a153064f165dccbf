"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Every request carries three headers: ``webhook-id`` (the event id, the same on
every attempt so receivers can dedupe), ``webhook-timestamp`` (Unix seconds of
this attempt) and ``webhook-signature``: space-separated ``v1,<base64>``
entries, one per active secret, each the HMAC-SHA256 of
``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded part of the
``whsec_…`` secret. During a rotation the previous secret signs too, so a
receiver holding either secret accepts the request.

An endpoint on the ed25519 scheme (``SIGNING_SCHEME_ED25519``) holds a
``whsk_…`` private key instead: its entries are ``v1a,<base64 ed25519
signature>`` over the same ``"{id}.{timestamp}.{body}"``, and the request
also carries ``webhook-key-id``: the kids (``signing_keys.kid``, the JWK
thumbprint the organisation's key set lists them under) of the keys that
signed, space-separated, in the order of the ``v1a`` entries. A rotation
from one scheme to the other signs with both kinds during the grace window
(a ``v1`` and a ``v1a`` entry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from webhooks_service.signing_keys import is_private_key, kid, private_key, public_key_of

SECRET_PREFIX = "whsec_"
KEY_ID_HEADER = "webhook-key-id"


@lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the bytes its base64 part encodes).

    Cached: the worker signs many requests with few secrets.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature of the message: ``v1,<base64 HMAC-SHA256>`` with a ``whsec_``
    secret, ``v1a,<base64 ed25519>`` with a ``whsk_`` private key."""
    to_sign = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    if is_private_key(secret):
        return "v1a," + base64.b64encode(private_key(secret).sign(to_sign)).decode("ascii")
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


@lru_cache(maxsize=4096)
def key_id(secret: str) -> str:
    """The kid of a ``whsk_`` key's public half (as listed in the key set)."""
    return kid(public_key_of(secret))


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (and ``webhook-key-id``
    when an ed25519 key signs)."""
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
    kids = [key_id(s) for s in secrets if is_private_key(s)]
    if kids:
        headers[KEY_ID_HEADER] = " ".join(kids)
    return headers

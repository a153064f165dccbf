"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Every request carries three headers: ``webhook-id`` (the event id, the same on
every attempt so receivers can dedupe), ``webhook-timestamp`` (Unix seconds of
this attempt) and ``webhook-signature``: space-separated ``v1,<base64>``
entries, one per active secret, each the HMAC-SHA256 of
``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded part of the
``whsec_…`` secret. During a rotation the previous secret signs too, so a
receiver holding either secret accepts the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

SECRET_PREFIX = "whsec_"


@lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the bytes its base64 part encodes).

    Cached: the worker signs many requests with few secrets.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature of the message with ``secret``."""
    to_sign = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }

"""Opaque page tokens: sealed, bound to the query that produced them.

A token is base64url (no padding) of ``nonce ‖ AES-256-GCM(JSON position)``
with the query's binding (the organisation and the filters) as associated
data, under the service's token key (``core/server_keys.py``). So a token

- cannot be forged or altered: anything but a token this service sealed for
  this very query fails authentication (another organisation's, other
  filters, a recomputed or edited one) and is INVALID_ARGUMENT;
- carries no readable position: the keyset position (an attempt's integer
  key for the log) stays inside the ciphertext, so walking pages tells
  nothing about other organisations' volume.

Callers still range-check the decoded position (:func:`decode` returns it as
JSON) before it reaches a query: a bug or a leaked key must not turn into a
500.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhooks_service.errors import FieldViolation, InvalidArgument

FIELD = "page_token"
MAX_TOKEN_CHARS = 1024
_NONCE = 12
_TAG = 16


def binding(*parts: object) -> bytes:
    """The associated data a token is bound to (the query's identity)."""
    return json.dumps([str(p) for p in parts], separators=(",", ":")).encode()


def encode(position: Any, bound_to: bytes, key: bytes) -> str:
    nonce = os.urandom(_NONCE)
    plain = json.dumps({"k": position}, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, bound_to)
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def invalid(reason: str = "not a token this service issued") -> InvalidArgument:
    return InvalidArgument(f"invalid page_token: {reason}", [FieldViolation(FIELD, reason)])


_FOREIGN = (
    "not a token this service issued for this query; pass the next_page_token of the "
    "previous page with the same filters, or no token for the first page"
)


def decode(token: str, bound_to: bytes, key: bytes) -> Any:
    """The keyset position sealed in ``token``; InvalidArgument naming ``page_token`` otherwise."""
    if len(token) > MAX_TOKEN_CHARS:
        raise invalid("token too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise invalid(_FOREIGN) from exc
    if len(raw) < _NONCE + _TAG:
        raise invalid(_FOREIGN)
    try:
        plain = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], bound_to)
        data = json.loads(plain)
    except (InvalidTag, ValueError, UnicodeDecodeError) as exc:
        raise invalid(_FOREIGN) from exc
    if not isinstance(data, dict) or "k" not in data:
        raise invalid(_FOREIGN)
    return data["k"]

"""Opaque page tokens bound to the query that produced them.

A token is base64url (no padding) of a small JSON object: the keyset position
(``k``) and a hash of the organisation and the filters (``b``). A token used
by another organisation or with other filters does not match its binding and
is refused as INVALID_ARGUMENT, like any token that does not decode. The
binding is a plain hash, not a MAC: tokens are not secret and a forged
position only moves within the caller's own rows, which the query scopes by
organisation anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from webhooks_service.errors import FieldViolation, InvalidArgument

FIELD = "page_token"


def binding(*parts: object) -> str:
    text = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(position: Any, bound_to: str) -> str:
    raw = json.dumps({"k": position, "b": bound_to}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid(reason: str) -> InvalidArgument:
    return InvalidArgument(f"invalid page_token: {reason}", [FieldViolation(FIELD, reason)])


def decode(token: str, bound_to: str) -> Any:
    """The keyset position of ``token``; InvalidArgument naming ``page_token`` otherwise."""
    if len(token) > 1024:
        raise _invalid("token too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise _invalid("not a token this service issued") from exc
    if not isinstance(data, dict) or "k" not in data or "b" not in data:
        raise _invalid("not a token this service issued")
    if data["b"] != bound_to:
        raise _invalid("the token belongs to another query; repeat the filters that produced it")
    return data["k"]

"""ed25519 signing keys (Standard Webhooks ``v1a``): formats, kids, JWKs.

A base module (no I/O, nothing of the service imported) because core (key
generation, the published key set) and delivery (signing) both need it.

- private key: ``whsk_`` + standard base64 of the 32-byte ed25519 seed
  (RFC 8032), held by the service only, stored sealed like a ``whsec_``
  secret (``core/secrets_at_rest.py``);
- public key: ``whpk_`` + standard base64 of the 32-byte public key: what
  ``ListWebhookConfigs`` answers and a receiver may pin;
- ``kid``: the RFC 7638 JWK thumbprint (base64url SHA-256 of
  ``{"crv":"Ed25519","kty":"OKP","x":"…"}``), so anybody holding a ``whpk_``
  key can compute the kid it is published under, and the ``webhook-key-id``
  request header names the kids that signed a request.

The cryptography is the ``cryptography`` package's; nothing is implemented here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "PRIVATE_PREFIX",
    "PUBLIC_PREFIX",
    "generate_private_key",
    "is_private_key",
    "jwk",
    "kid",
    "private_key",
    "public_key_of",
    "raw_public_key",
]

PRIVATE_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"
_KEY_BYTES = 32


def generate_private_key() -> str:
    """A new ``whsk_…`` private key (a fresh random ed25519 seed)."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return PRIVATE_PREFIX + base64.b64encode(seed).decode("ascii")


def is_private_key(secret: str) -> bool:
    return secret.startswith(PRIVATE_PREFIX)


@lru_cache(maxsize=4096)
def private_key(secret: str) -> Ed25519PrivateKey:
    """The key object of a ``whsk_…`` key (cached: few keys sign many requests)."""
    seed = base64.b64decode(secret.removeprefix(PRIVATE_PREFIX), validate=True)
    if len(seed) != _KEY_BYTES:
        raise ValueError("an ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


@lru_cache(maxsize=4096)
def public_key_of(secret: str) -> str:
    """The ``whpk_…`` public key of a ``whsk_…`` private key."""
    raw = private_key(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode("ascii")


def raw_public_key(public: str) -> bytes:
    """The 32 bytes of a ``whpk_…`` key (ValueError if it is not one)."""
    if not public.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a public key starts with {PUBLIC_PREFIX!r}")
    try:
        raw = base64.b64decode(public.removeprefix(PUBLIC_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a public key is whpk_ followed by standard base64") from exc
    if len(raw) != _KEY_BYTES:
        raise ValueError("an ed25519 public key is 32 bytes")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=4096)
def kid(public: str) -> str:
    """The RFC 7638 thumbprint of the key's JWK: its ``kid`` in the key set."""
    x = _b64url(raw_public_key(public))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def jwk(public: str) -> dict[str, str]:
    """The public JWK (RFC 7517/8037) of a ``whpk_…`` key: never a private member."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw_public_key(public)),
        "kid": kid(public),
        "use": "sig",
        "alg": "EdDSA",
    }

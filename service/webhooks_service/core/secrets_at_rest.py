"""Webhook secrets encrypted at rest (``WEBHOOKS_SECRET_KEY``).

A webhook secret must be recoverable (the worker signs with it), so it cannot
be hashed like an API key. When the operator sets ``WEBHOOKS_SECRET_KEY``,
secrets are stored as ``enc:v1:<base64(nonce || AES-256-GCM ciphertext+tag)>``;
a copy of the database alone then does not let anyone sign as the platform.

Key handling (see docs/decisions.md):

- ``WEBHOOKS_SECRET_KEY`` is a high-entropy string of at least 32 characters
  (``python -c 'import secrets; print(secrets.token_urlsafe(32))'``). The
  AES key is HKDF-SHA256(key text, info ``webhooks secrets at rest v1``):
  HKDF, not a password hash, because the input must already be random.
- Several keys may be given comma-separated: the first encrypts, every one is
  tried to decrypt (GCM's tag tells which fits). That is how the operator
  rotates the key: prepend the new one, re-put or wait for secrets to change,
  then drop the old one.
- Rows written before the key was set stay plaintext (``whsec_…``) and remain
  readable; they are encrypted the next time they are written.
- An encrypted row with no key, or with keys none of which fits, is a
  :class:`ConfigurationError` — at startup (:func:`check_key` on one
  encrypted row, unless the database is unreachable then) and at use (the
  attempt fails and is logged; the delivery is retried after its lease).
  Messages never contain the secret or the ciphertext.

Sealed by default (:func:`resolve_key`, called by ``serve``, ``worker``,
``run`` and ``secrets reseal``): on an embedded install (a SQLite file)
without ``WEBHOOKS_SECRET_KEY``, the service uses a key file beside the
database, ``<database file>.key`` (mode 0600), and generates it the first
time; copying the database alone then does not reveal the secrets. A database
that already holds sealed secrets but has lost its key file is an error, not
a new key. PostgreSQL deployments (several processes, several machines) get
no generated key (each machine would make its own): without
``WEBHOOKS_SECRET_KEY`` they log a warning at start.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.errors import ConfigurationError, DatabaseError
from webhooks_service.storage import configs as store
from webhooks_service.storage import db

__all__ = [
    "ENCRYPTED_PREFIX",
    "MIN_KEY_CHARS",
    "SecretCipher",
    "check_key",
    "cipher_for",
    "key_file_for",
    "reseal_all",
    "resolve_key",
]

log = logging.getLogger(__name__)

ENCRYPTED_PREFIX = "enc:v1:"
MIN_KEY_CHARS = 32
_NONCE_BYTES = 12
_HKDF_INFO = b"webhooks secrets at rest v1"


def _derive(key_text: str) -> AESGCM:
    if len(key_text) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"WEBHOOKS_SECRET_KEY: each key must be at least {MIN_KEY_CHARS} characters of "
            "random text (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return AESGCM(hkdf.derive(key_text.encode()))


class SecretCipher:
    """Seals and opens stored webhook secrets with the operator's key(s)."""

    def __init__(self, key: str) -> None:
        texts = [part.strip() for part in key.split(",") if part.strip()]
        self._keys = [_derive(t) for t in texts]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def seal(self, secret: str) -> str:
        """The stored form of ``secret``: encrypted with the first key, or as is without one."""
        if not self._keys or secret.startswith(ENCRYPTED_PREFIX):
            return secret
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[0].encrypt(nonce, secret.encode(), None)
        return ENCRYPTED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret of a stored value (plaintext rows pass through)."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        if not self._keys:
            raise ConfigurationError(
                "a webhook secret is encrypted at rest but WEBHOOKS_SECRET_KEY is not set"
            )
        try:
            raw = base64.b64decode(stored[len(ENCRYPTED_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("a stored webhook secret is corrupt (bad base64)") from None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for aes in self._keys:
            try:
                return aes.decrypt(nonce, sealed, None).decode()
            except (InvalidTag, ValueError):
                continue
        raise ConfigurationError(
            "WEBHOOKS_SECRET_KEY does not decrypt the stored webhook secrets "
            "(wrong key, or the key that encrypted them was removed)"
        )


@lru_cache(maxsize=8)
def cipher_for(key: str) -> SecretCipher:
    """The (cached) cipher for a ``WEBHOOKS_SECRET_KEY`` value."""
    return SecretCipher(key)


def check_key(engine: Engine, key: str) -> None:
    """ConfigurationError unless ``key`` opens the stored secrets (checked on one row).

    Called at startup by the API server and the worker, so a missing or wrong
    key stops the process with one clear line instead of failing deliveries.
    """
    cipher = cipher_for(key)  # validates the key's shape even with no rows
    try:
        with db.read_transaction(engine) as conn:
            sample = store.sample_encrypted_secret(conn, ENCRYPTED_PREFIX)
    except DatabaseError as exc:
        # The database being down must not stop start-up (the API answers
        # UNAVAILABLE, the worker backs off); the key is then checked at use.
        log.warning("could not check WEBHOOKS_SECRET_KEY against the database now: %s", exc)
        return
    if sample is not None:
        cipher.open(sample)


def reseal_all(engine: Engine, key: str, *, batch_size: int = 500) -> int:
    """Store every webhook secret (and custom headers) sealed with the first key; the
    number of configs.

    Turns plaintext rows into ``enc:v1:`` ones after the operator sets
    ``WEBHOOKS_SECRET_KEY`` and, after prepending a new key, moves every row
    to it (then the old key can be dropped). Short write transactions in id
    order; safe while the service runs (a concurrent write seals anyway).
    """
    cipher = cipher_for(key)
    if not cipher.enabled:
        raise ConfigurationError("set WEBHOOKS_SECRET_KEY (or --secret-key) to seal secrets with")
    done, after = 0, ""
    while True:
        with db.write_transaction(engine) as conn:
            rows = store.secrets_page(conn, after_id=after, limit=batch_size)
            for config_id, secret, previous, headers in rows:
                store.set_secrets(
                    conn,
                    config_id,
                    cipher.seal(cipher.open(secret)),
                    None if previous is None else cipher.seal(cipher.open(previous)),
                    None if headers is None else cipher.seal(cipher.open(headers)),
                )
        if not rows:
            return done
        done += len(rows)
        after = rows[-1][0]


def key_file_for(engine: Engine) -> Path | None:
    """The key file of an embedded (SQLite file) database; None otherwise."""
    if not db.is_sqlite(engine):
        return None
    name = engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name).expanduser().resolve()
    return path.with_name(path.name + ".key")


def _read_key_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file %s is readable by others; chmod 600 it", path)
    text = path.read_text().strip()
    if len(text) < MIN_KEY_CHARS:
        raise ConfigurationError(f"secret key file {path} is damaged (too short)")
    return text


def _create_key_file(path: Path) -> str:
    text = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    log.info("generated the secret key file %s (webhook secrets are sealed with it)", path)
    return text


def resolve_key(settings: Settings, engine: Engine) -> Settings:
    """``settings`` with the key webhook secrets are sealed with (see module doc)."""
    if settings.secret_key:
        return settings
    path = key_file_for(engine)
    if path is None:
        log.warning(
            "WEBHOOKS_SECRET_KEY is not set: webhook signing secrets are stored in clear in "
            "the database; set it (at least 32 random characters, the same on every "
            "process) and run `webhooks secrets reseal`"
        )
        return settings
    if path.exists():
        return replace(settings, secret_key=_read_key_file(path))
    with db.read_transaction(engine) as conn:
        sealed = store.sample_encrypted_secret(conn, ENCRYPTED_PREFIX)
    if sealed is not None:
        raise ConfigurationError(
            f"the database holds sealed webhook secrets but their key file {path} is "
            "missing; restore it, or set WEBHOOKS_SECRET_KEY to the key that sealed them"
        )
    return replace(settings, secret_key=_create_key_file(path))

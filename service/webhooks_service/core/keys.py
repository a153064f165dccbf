"""API keys: creation (shown once) and authentication.

A key reads ``whk_<id part>_<secret part>``. The id part finds the row
(``key_<id part>``); only the SHA-256 of the secret part is stored, and it is
compared with :func:`hmac.compare_digest`, so a key can neither be recovered
from the database nor guessed byte by byte from response times. SHA-256 (not
a slow password hash) is right here: the secret is 256 random bits, not a
human password, and every request checks it.

A key belongs to one organisation; a *platform* key (organisation ``None``)
may only publish events, for any organisation.

**Lifecycle.** A key may expire (``expires_in`` at creation) and be revoked
(:func:`revoke_key`); either way it is refused from then on, and so are the
portal sessions it opened (``core/credentials.py`` authenticates both). Its visible
prefix (:func:`key_prefix`, ``whk_<id part>_``) is the first characters of
the key itself, so a leaked key is found in ``webhooks keys list`` (and
revoked with ``webhooks keys revoke``) from its first characters. Each
process re-checks a key against the database at least every
``api/credentials.py``'s ``CACHE_SECONDS`` (0.5 s), so a revocation or an
expiry reaches every running process within a second, on SQLite and
PostgreSQL alike, for one primary-key read per key and process every half
second. ``last_used_at`` is written at most once a minute per key and process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.core.ids import new_id
from webhooks_service.errors import InvalidArgument, NotFound
from webhooks_service.storage import db
from webhooks_service.storage import keys as store
from webhooks_service.storage import orgs as org_store
from webhooks_service.storage.keys import ApiKeyRow
from webhooks_service.storage.models import utcnow

log = logging.getLogger(__name__)

__all__ = [
    "ID_PREFIX",
    "KEY_PREFIX",
    "SCOPES",
    "SCOPE_EVENTS_PUBLISH",
    "SCOPE_WEBHOOKS_READ",
    "SCOPE_WEBHOOKS_WRITE",
    "ApiKeyRow",
    "create_key",
    "create_platform_key",
    "digest",
    "key_prefix",
    "list_keys",
    "note_use",
    "parse_scopes",
    "revoke_key",
]

SCOPE_WEBHOOKS_READ = "webhooks:read"
SCOPE_WEBHOOKS_WRITE = "webhooks:write"
SCOPE_EVENTS_PUBLISH = "events:publish"
SCOPES: tuple[str, ...] = (SCOPE_WEBHOOKS_READ, SCOPE_WEBHOOKS_WRITE, SCOPE_EVENTS_PUBLISH)

KEY_PREFIX = "whk_"
ID_PREFIX = "key_"
# last_used_at is refreshed when older than this (one write per key a minute).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(secret: str) -> str:
    """The SHA-256 (hex) a key's or portal token's secret part is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Validate scope names; at least one is required."""
    result = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(result - set(SCOPES))
    if unknown:
        raise InvalidArgument(
            f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
        )
    if not result:
        raise InvalidArgument(f"give at least one scope: {', '.join(SCOPES)}")
    return result


def key_prefix(key_id: str) -> str:
    """The first characters of the whole key: ``whk_<id part>_`` (shown in listings)."""
    return f"{KEY_PREFIX}{key_id.removeprefix(ID_PREFIX)}_"


def _create(
    engine: Engine,
    organisation_id: str | None,
    scopes: frozenset[str],
    name: str,
    expires_in: timedelta | None = None,
) -> tuple[ApiKeyRow, str]:
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidArgument("--expires-in must be a positive duration (e.g. 90d, 12h, 30m)")
    key_id = new_id("key")
    secret = secrets.token_urlsafe(32)
    raw = f"{KEY_PREFIX}{key_id.removeprefix(ID_PREFIX)}_{secret}"
    now = utcnow()
    with db.write_transaction(engine) as conn:
        if organisation_id is not None and org_store.get(conn, organisation_id) is None:
            raise NotFound(f"organisation {organisation_id!r} does not exist")
        row = store.insert(
            conn,
            key_id=key_id,
            organisation_id=organisation_id,
            name=name,
            secret_hash=digest(secret),
            scopes=scopes,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
    return row, raw


def create_key(
    engine: Engine,
    organisation_id: str,
    scopes: Iterable[str],
    name: str = "",
    *,
    expires_in: timedelta | None = None,
) -> tuple[ApiKeyRow, str]:
    """A new key of one organisation; returns the row and the whole key (shown once)."""
    return _create(engine, organisation_id, parse_scopes(scopes), name, expires_in)


def create_platform_key(
    engine: Engine,
    name: str = "",
    scopes: Iterable[str] = (SCOPE_EVENTS_PUBLISH,),
    *,
    expires_in: timedelta | None = None,
) -> tuple[ApiKeyRow, str]:
    """A key without organisation that may publish events for every organisation
    (``events:publish``) and/or open dashboard portal sessions for any
    organisation (``webhooks:read``/``webhooks:write``, the scope ceiling of
    those sessions; a platform key administers no organisation itself)."""
    return _create(engine, None, parse_scopes(scopes), name, expires_in)


def list_keys(
    engine: Engine, *, organisation_id: str | None = None, platform_only: bool = False
) -> list[ApiKeyRow]:
    """Every key (or one organisation's, or the platform keys), oldest first."""
    with db.read_transaction(engine) as conn:
        if organisation_id is not None and org_store.get(conn, organisation_id) is None:
            raise NotFound(f"organisation {organisation_id!r} does not exist")
        return store.list_keys(conn, organisation_id=organisation_id, platform_only=platform_only)


def _key_id(text: str) -> str:
    """``key_…``, or a key's prefix / the whole (leaked) key -> ``key_…``."""
    text = text.strip()
    if text.startswith(KEY_PREFIX):
        id_part = text[len(KEY_PREFIX) :].split("_", 1)[0]
        return ID_PREFIX + id_part
    return text


def revoke_key(engine: Engine, key: str, *, clock: Callable[[], datetime] = utcnow) -> ApiKeyRow:
    """Revoke a key given by id (``key_…``), prefix or whole key; the row after it.

    Idempotent (a revoked key keeps its first ``revoked_at``); NotFound for
    an unknown key.
    """
    key_id = _key_id(key)
    with db.write_transaction(engine) as conn:
        if not store.revoke(conn, key_id, now=clock()):
            raise NotFound(f"API key {key_id!r} does not exist")
        row = store.get(conn, key_id)
    assert row is not None
    return row


def note_use(engine: Engine, row: ApiKeyRow, now: datetime) -> None:
    """Record that ``row`` authenticated (``core/credentials.py``), at most once a
    minute, off the caller's path: a busy database must not delay the call."""
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        threading.Thread(target=_touch, args=(engine, row.id, now), daemon=True).start()


def _touch(engine: Engine, key_id: str, now: datetime) -> None:
    """Record the use; never fails the call (a busy database only delays it)."""
    try:
        with db.write_transaction(engine) as conn:
            store.touch(conn, key_id, now=now, stale_before=now - LAST_USED_RESOLUTION)
    except Exception as exc:
        log.debug("could not record the use of API key %s: %s", key_id, exc)

"""API keys: creation (shown once) and authentication.

A key reads ``whk_<id part>_<secret part>``. The id part finds the row
(``key_<id part>``); only the SHA-256 of the secret part is stored, and it is
compared with :func:`hmac.compare_digest`, so a key can neither be recovered
from the database nor guessed byte by byte from response times. SHA-256 (not
a slow password hash) is right here: the secret is 256 random bits, not a
human password, and every request checks it.

A key belongs to one organisation; a *platform* key (organisation ``None``)
may only publish events, for any organisation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from sqlalchemy.engine import Engine

from webhooks_service.core.ids import new_id
from webhooks_service.errors import InvalidArgument, NotFound, Unauthenticated
from webhooks_service.storage import db
from webhooks_service.storage import keys as store
from webhooks_service.storage import orgs as org_store
from webhooks_service.storage.keys import ApiKeyRow
from webhooks_service.storage.models import utcnow

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "SCOPE_EVENTS_PUBLISH",
    "SCOPE_WEBHOOKS_READ",
    "SCOPE_WEBHOOKS_WRITE",
    "ApiKeyRow",
    "authenticate",
    "create_key",
    "create_platform_key",
    "parse_scopes",
]

SCOPE_WEBHOOKS_READ = "webhooks:read"
SCOPE_WEBHOOKS_WRITE = "webhooks:write"
SCOPE_EVENTS_PUBLISH = "events:publish"
SCOPES: tuple[str, ...] = (SCOPE_WEBHOOKS_READ, SCOPE_WEBHOOKS_WRITE, SCOPE_EVENTS_PUBLISH)

KEY_PREFIX = "whk_"
_ID_PREFIX = "key_"


def _hash(secret: str) -> str:
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


def _create(
    engine: Engine, organisation_id: str | None, scopes: frozenset[str], name: str
) -> tuple[ApiKeyRow, str]:
    key_id = new_id("key")
    secret = secrets.token_urlsafe(32)
    raw = f"{KEY_PREFIX}{key_id.removeprefix(_ID_PREFIX)}_{secret}"
    with db.write_transaction(engine) as conn:
        if organisation_id is not None and org_store.get(conn, organisation_id) is None:
            raise NotFound(f"organisation {organisation_id!r} does not exist")
        row = store.insert(
            conn,
            key_id=key_id,
            organisation_id=organisation_id,
            name=name,
            secret_hash=_hash(secret),
            scopes=scopes,
            created_at=utcnow(),
        )
    return row, raw


def create_key(
    engine: Engine, organisation_id: str, scopes: Iterable[str], name: str = ""
) -> tuple[ApiKeyRow, str]:
    """A new key of one organisation; returns the row and the whole key (shown once)."""
    return _create(engine, organisation_id, parse_scopes(scopes), name)


def create_platform_key(
    engine: Engine, name: str = "", scopes: Iterable[str] = (SCOPE_EVENTS_PUBLISH,)
) -> tuple[ApiKeyRow, str]:
    """A key without organisation that may publish events for every organisation
    (``events:publish``) and/or open dashboard portal sessions for any
    organisation (``webhooks:read``/``webhooks:write``, the scope ceiling of
    those sessions; a platform key administers no organisation itself)."""
    return _create(engine, None, parse_scopes(scopes), name)


def split_key(raw: str) -> tuple[str, str] | None:
    """``whk_<id>_<secret>`` -> (``key_<id>``, secret), or None if malformed."""
    if not raw.startswith(KEY_PREFIX):
        return None
    id_part, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not id_part or not secret or len(id_part) > 27:
        return None
    return _ID_PREFIX + id_part, secret


def authenticate(engine: Engine, raw: str) -> ApiKeyRow:
    """The key row for a presented key; Unauthenticated for anything else."""
    parts = split_key(raw)
    row = None
    if parts is not None:
        with db.read_transaction(engine) as conn:
            row = store.get(conn, parts[0])
    # Compare even when the row is missing so both paths cost the same.
    expected = row.secret_hash if row is not None else _hash("")
    presented = _hash(parts[1]) if parts is not None else _hash("-")
    if row is None or not hmac.compare_digest(expected, presented):
        raise Unauthenticated("invalid API key")
    if row.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    return row

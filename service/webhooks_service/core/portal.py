"""Portal sessions: short-lived dashboard tokens of one organisation.

A host platform that embeds or links the dashboard calls
``CreatePortalSession`` with its own API key instead of handing that key to a
browser. The session:

- belongs to exactly one organisation: the caller's, or for a platform key
  the ``organisation_id`` it names;
- carries ``webhooks:read`` and/or ``webhooks:write``, never more than the
  caller has (the *scope ceiling*), and never ``events:publish``;
- expires (default :data:`DEFAULT_TTL_SECONDS`, the operator's
  ``portal_session_ttl``; a request may ask for 60 s to 24 h), never after
  the key that minted it, and can be revoked; it also ends when that key is
  revoked or expires (``core/credentials.py``); an ended session is
  UNAUTHENTICATED with a message saying so;
- cannot mint further sessions (a leaked token must not outlive itself).

The token reads ``wpt_<id part>_<secret part>``, like an API key: the id part
finds the row ``wps_<id part>``; only the SHA-256 of the secret part is
stored and it is compared in constant time (``core/credentials.py``). Every
function takes ``now`` so that tests can move the clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.core import keys
from webhooks_service.core.ids import new_id
from webhooks_service.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from webhooks_service.storage import db
from webhooks_service.storage import orgs as org_store
from webhooks_service.storage import portal_sessions as store
from webhooks_service.storage.portal_sessions import PortalSessionRow

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "ID_PREFIX",
    "MAX_TTL_SECONDS",
    "MIN_TTL_SECONDS",
    "OPERATOR",
    "PORTAL_SCOPES",
    "TOKEN_PREFIX",
    "Caller",
    "NewSession",
    "PortalSessionRow",
    "check_live",
    "create_session",
    "is_portal_token",
    "revoke_session",
    "stamp",
]

TOKEN_PREFIX = "wpt_"
ID_PREFIX = "wps_"
PORTAL_SCOPES: tuple[str, ...] = (keys.SCOPE_WEBHOOKS_READ, keys.SCOPE_WEBHOOKS_WRITE)
DEFAULT_TTL_SECONDS = 3600
OPERATOR = "operator"
"""``created_by`` of the sessions ``webhooks dashboard`` mints: no key behind them."""
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 86400


@dataclass(frozen=True)
class Caller:
    """Who asks: an API key (``organisation_id`` None for a platform key) or a
    portal session (``is_portal``)."""

    key_id: str
    organisation_id: str | None
    scopes: frozenset[str]
    is_portal: bool = False
    expires_at: datetime | None = None  # the key's expiry: no session outlives it


@dataclass(frozen=True)
class NewSession:
    row: PortalSessionRow
    token: str  # the whole bearer token, shown once


def is_portal_token(raw: str) -> bool:
    return raw.startswith(TOKEN_PREFIX)


def _organisation(caller: Caller, requested: str) -> str:
    requested = requested.strip()
    if caller.organisation_id is None:
        if not requested:
            raise InvalidArgument(
                "a platform key must name the organisation of the session",
                [FieldViolation("organisation_id", "required with a platform key: org_…")],
            )
        return requested
    if requested and requested != caller.organisation_id:
        raise PermissionDenied(
            "this API key can only open portal sessions for its own organisation"
        )
    return caller.organisation_id


def _scopes(caller: Caller, requested: Iterable[str]) -> frozenset[str]:
    asked = frozenset(s.strip() for s in requested if s.strip())
    unknown = sorted(asked - set(PORTAL_SCOPES))
    if unknown:
        raise InvalidArgument(
            f"a portal session cannot have the scope {', '.join(unknown)}",
            [FieldViolation("scopes", f"choose from {', '.join(PORTAL_SCOPES)}")],
        )
    if not asked:
        asked = caller.scopes & set(PORTAL_SCOPES)
    beyond = sorted(asked - caller.scopes)
    if beyond:
        raise PermissionDenied(
            f"a portal session cannot have more scopes than its creator: this API key "
            f"lacks {', '.join(beyond)}"
        )
    return asked


def _ttl(requested: int, default: float) -> int:
    if requested == 0:
        return int(default)
    if not MIN_TTL_SECONDS <= requested <= MAX_TTL_SECONDS:
        raise InvalidArgument(
            "invalid portal session lifetime",
            [
                FieldViolation(
                    "ttl_seconds",
                    f"must be {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} seconds (0: the default, "
                    f"{int(default)})",
                )
            ],
        )
    return requested


def create_session(
    engine: Engine,
    caller: Caller,
    *,
    organisation_id: str = "",
    scopes: Iterable[str] = (),
    ttl_seconds: int = 0,
    default_ttl_seconds: float = DEFAULT_TTL_SECONDS,
    now: datetime,
) -> NewSession:
    """Mint a session for the caller's organisation (or the one a platform key names)."""
    if caller.is_portal:
        raise PermissionDenied("a portal session cannot open further portal sessions")
    org = _organisation(caller, organisation_id)
    granted = _scopes(caller, scopes)
    if not granted:
        raise PermissionDenied(
            "this API key has neither webhooks:read nor webhooks:write to hand to a portal session"
        )
    lifetime = _ttl(ttl_seconds, default_ttl_seconds)
    expires_at = now + timedelta(seconds=lifetime)
    if caller.expires_at is not None:
        if caller.expires_at <= now:
            raise Unauthenticated("API key expired")
        expires_at = min(expires_at, caller.expires_at)
    session_id = new_id("wps")
    secret = secrets.token_urlsafe(32)
    token = f"{TOKEN_PREFIX}{session_id.removeprefix(ID_PREFIX)}_{secret}"
    row = PortalSessionRow(
        id=session_id,
        organisation_id=org,
        secret_hash=keys.digest(secret),
        scopes=granted,
        created_by=caller.key_id,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    with db.write_transaction(engine) as conn:
        if org_store.get(conn, org) is None:
            raise NotFound(f"organisation {org!r} does not exist")
        store.delete_ended(conn, org, now - timedelta(seconds=store.KEEP_ENDED_SECONDS))
        store.insert(conn, row)
    return NewSession(row, token)


def stamp(value: datetime) -> str:
    """A time as shown in the messages of ended sessions."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_live(row: PortalSessionRow, now: datetime) -> None:
    """Unauthenticated, saying why, when the session has ended."""
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"portal session revoked at {stamp(row.revoked_at)}; "
            "open the dashboard again from your platform, or sign in with an API key"
        )
    if row.expires_at <= now:
        raise Unauthenticated(
            f"portal session expired at {stamp(row.expires_at)}; "
            "open the dashboard again from your platform, or sign in with an API key"
        )


def revoke_session(engine: Engine, caller: Caller, session_id: str, *, now: datetime) -> bool:
    """End a session of the caller's organisation (any organisation for a
    platform key); True if this call ended it. Another organisation's session
    is NOT_FOUND, like every other id."""
    session_id = session_id.strip()
    if not session_id.startswith(ID_PREFIX):
        raise InvalidArgument(
            "invalid portal session id",
            [FieldViolation("session_id", "a portal session id, wps_…")],
        )
    with db.write_transaction(engine) as conn:
        row = store.get(conn, session_id)
        visible = row is not None and (
            caller.organisation_id is None or row.organisation_id == caller.organisation_id
        )
        if row is None or not visible:
            raise NotFound(f"portal session {session_id!r} not found")
        return store.revoke(conn, session_id, row.organisation_id, now)

"""Bearer credentials -> what they grant: THE authentication of API keys
(``whk_…``, ``core/keys.py``) and portal session tokens (``wpt_…``,
``core/portal.py``).

Both read ``<prefix><id part>_<secret part>``: the id part finds the row, only
the SHA-256 of the secret part is stored, and it is compared with
:func:`hmac.compare_digest` (also when no row was found, so both paths cost the
same). Then the lifecycle:

- a key is refused once revoked or expired;
- a portal session is refused once revoked or expired, **and once the key that
  minted it is** (issue 27, item 1): revoking a leaked key ends the dashboard
  sessions it opened, in the same read as the session itself. A session's
  :attr:`Credential.expires_at` is the earlier of its own end and its key's.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from webhooks_service.core import keys, portal
from webhooks_service.errors import Unauthenticated
from webhooks_service.storage import db
from webhooks_service.storage import keys as key_store
from webhooks_service.storage import portal_sessions as session_store
from webhooks_service.storage.keys import ApiKeyRow

__all__ = ["Credential", "authenticate", "split_token"]


@dataclass(frozen=True)
class Credential:
    """A verified key or portal session: ``id`` is ``key_…`` or ``wps_…``."""

    id: str
    organisation_id: str | None
    scopes: frozenset[str]
    expires_at: datetime | None
    is_portal: bool = False


def split_token(raw: str, prefix: str, id_prefix: str) -> tuple[str, str] | None:
    """``<prefix><id>_<secret>`` -> (``<id_prefix><id>``, secret), or None if malformed."""
    if not raw.startswith(prefix):
        return None
    id_part, sep, secret = raw[len(prefix) :].partition("_")
    if not sep or not id_part or not secret or len(id_part) > 27:
        return None
    return id_prefix + id_part, secret


def _verified(stored_hash: str | None, parts: tuple[str, str] | None) -> bool:
    expected = stored_hash if stored_hash is not None else keys.digest("")
    presented = keys.digest(parts[1]) if parts is not None else keys.digest("-")
    return hmac.compare_digest(expected, presented) and stored_hash is not None


def _check_key(row: ApiKeyRow, now: datetime) -> None:
    if row.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated("API key expired")


def _check_minting_key(row: ApiKeyRow | None, now: datetime) -> None:
    again = "open the dashboard again from your platform, or sign in with an API key"
    if row is None:
        raise Unauthenticated(f"portal session ended: the API key that opened it is gone; {again}")
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"portal session ended: the API key that opened it was revoked at "
            f"{portal.stamp(row.revoked_at)}; {again}"
        )
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated(
            f"portal session ended: the API key that opened it expired at "
            f"{portal.stamp(row.expires_at)}; {again}"
        )


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def authenticate(engine: Engine, raw: str, now: datetime) -> Credential:
    """The credential a presented key or portal token stands for; Unauthenticated otherwise."""
    if portal.is_portal_token(raw):
        return _portal(engine, raw, now)
    parts = split_token(raw, keys.KEY_PREFIX, keys.ID_PREFIX)
    row = None
    if parts is not None:
        with db.read_transaction(engine) as conn:
            row = key_store.get(conn, parts[0])
    if not _verified(None if row is None else row.secret_hash, parts) or row is None:
        raise Unauthenticated("invalid API key")
    _check_key(row, now)
    keys.note_use(engine, row, now)
    return Credential(row.id, row.organisation_id, row.scopes, row.expires_at)


def _portal(engine: Engine, raw: str, now: datetime) -> Credential:
    parts = split_token(raw, portal.TOKEN_PREFIX, portal.ID_PREFIX)
    session = minter = None
    if parts is not None:
        with db.read_transaction(engine) as conn:
            session = session_store.get(conn, parts[0])
            if session is not None and session.created_by != portal.OPERATOR:
                minter = key_store.get(conn, session.created_by)
    if not _verified(None if session is None else session.secret_hash, parts) or session is None:
        raise Unauthenticated("invalid portal session token")
    portal.check_live(session, now)
    expires_at: datetime | None = session.expires_at
    if session.created_by != portal.OPERATOR:  # the operator's own sessions have no key
        _check_minting_key(minter, now)
        assert minter is not None
        expires_at = _earlier(session.expires_at, minter.expires_at)
    return Credential(
        session.id, session.organisation_id, session.scopes, expires_at, is_portal=True
    )

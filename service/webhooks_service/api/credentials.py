"""Who is calling: ``authorization: Bearer <key or portal token>`` -> a
:class:`Principal`, exposed to servicers through a contextvar.

One implementation for both kinds of credential (``core/credentials.py``).
Verified credentials are cached for :data:`CACHE_SECONDS` (never past their
expiry) so that a busy caller does not pay a query per call, while a revoked
or expired key or portal session — or the key that minted a session — is
refused by every process within a second. The cache is keyed by the SHA-256
of the whole credential, so it never holds a usable secret. Credentials that
failed are remembered for :data:`BAD_SECONDS` (a random secret can never
become valid, a revoked key never again), so a client repeating a bad key is
answered without a database lookup.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service.core import credentials, portal
from webhooks_service.errors import PermissionDenied, Unauthenticated
from webhooks_service.storage.models import utcnow

__all__ = [
    "BAD_SECONDS",
    "CACHE_SECONDS",
    "Authenticator",
    "Principal",
    "bearer",
    "current_principal",
    "require_organisation",
    "use_principal",
]

CACHE_SECONDS = 0.5
BAD_SECONDS = 60.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key of one organisation, a platform key
    (``organisation_id`` None) that may publish for every organisation, or a
    portal session (``is_portal``; ``key_id`` is then the session id, wps_…).
    It stops at ``expires_at`` (a session: the earlier of its end and its key's)."""

    key_id: str
    organisation_id: str | None
    scopes: frozenset[str]
    is_portal: bool = False
    expires_at: datetime | None = None

    def as_caller(self) -> portal.Caller:
        return portal.Caller(
            self.key_id, self.organisation_id, self.scopes, self.is_portal, self.expires_at
        )


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "webhooks_principal", default=None
)


def current_principal() -> Principal:
    """The caller of the current RPC; Unauthenticated outside an authenticated call."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def require_organisation() -> str:
    """The caller's organisation id; PermissionDenied for a platform key."""
    principal = current_principal()
    if principal.organisation_id is None:
        raise PermissionDenied("a platform key cannot administer an organisation's webhooks")
    return principal.organisation_id


def use_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Set the current principal (for tests and in-process callers); returns the reset token."""
    return _principal.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _principal.reset(token)


def bearer(metadata: Any) -> str:
    """The credential of ``authorization: Bearer …``; Unauthenticated without one."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <api key>'")
            return token.strip()
    raise Unauthenticated("missing API key: send 'authorization: Bearer <api key>'")


class Authenticator:
    """Bearer credential -> Principal, with the short cache described above."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._wall_clock = wall_clock
        self._good: dict[str, tuple[float, Principal]] = {}
        self._bad: OrderedDict[str, tuple[float, str]] = OrderedDict()  # until, why

    def _live(self, principal: Principal) -> bool:
        return principal.expires_at is None or principal.expires_at > self._wall_clock()

    async def authenticate(self, metadata: Any) -> Principal:
        raw = bearer(metadata)
        digest = hashlib.sha256(raw.encode()).hexdigest()
        now = self._clock()
        hit = self._good.get(digest)
        if hit is not None and hit[0] > now and self._live(hit[1]):
            return hit[1]
        bad = self._bad.get(digest)
        if bad is not None and bad[0] > now:
            raise Unauthenticated(bad[1])
        try:
            found = await asyncio.to_thread(
                credentials.authenticate, self._engine, raw, self._wall_clock()
            )
        except Unauthenticated as exc:
            self._bad[digest] = (now + BAD_SECONDS, str(exc))
            self._bad.move_to_end(digest)
            if len(self._bad) > _CACHE_MAX:
                self._bad.popitem(last=False)
            raise
        principal = Principal(
            found.id, found.organisation_id, found.scopes, found.is_portal, found.expires_at
        )
        if len(self._good) >= _CACHE_MAX:
            self._good.clear()
        self._good[digest] = (now + CACHE_SECONDS, principal)
        return principal

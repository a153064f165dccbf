"""The organisation's published ed25519 public keys (JWKS, RFC 7517).

``GET /webhooks/orgs/{organisation_id}/jwks.json`` needs no API key: a
receiver fetches it to verify ``v1a`` signatures without holding a secret.
What it lists, and what it never does:

- the current public key of every live endpoint on ``SigningScheme.ED25519``
  and the replaced key of one still in its rotation grace
  (``domain.previous_secret_signs``: the same rule the worker signs by);
  nothing else: only the ``public_key`` columns are read, never a private
  key, and only the organisation's own rows;
- ``kid`` = the key's RFC 7638 thumbprint (``signing_keys.kid``), which every
  request names in ``webhook-key-id``;
- an organisation that does not exist, an id that is not shaped like one,
  and an organisation without ed25519 endpoints all answer ``{"keys": []}``,
  so the path cannot be used to learn which organisations exist.

Bounded: answers are cached per organisation for ``jwks_cache_seconds`` (the
``max-age`` it is served with, so receivers and shared caches keep it as
long), in at most :data:`CACHE_ENTRIES` entries; an id not shaped like an
organisation id never reaches the database; the database reads of cache
misses are rate limited per process by the API layer. A write in this
process (a new endpoint, a rotation, a scheme switch) drops that
organisation's entry, so its new key is listed at once here and within
``jwks_cache_seconds`` on the other processes; during that window the
replaced key still signs too (the grace), so a receiver with an old key set
still verifies every request, and a receiver that meets an unknown kid
refetches (``webhooks_client.receiver.KeySet``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from webhooks_service.domain import previous_secret_signs, utcnow
from webhooks_service.signing_keys import jwk
from webhooks_service.storage import configs as store
from webhooks_service.storage import db

__all__ = ["CACHE_ENTRIES", "KeySets", "key_set"]

CACHE_ENTRIES = 10_000
# The ids core/ids.new_id makes for organisations (and nothing else).
_ORG_ID = re.compile(r"org_[0-9a-f]{1,28}")
# Keys listed at most (two per endpoint during a rotation, endpoints capped by
# the quota): a bound even if the quota is raised later.
MAX_KEYS = 2_000

Jwk = dict[str, str]


def key_set(engine: Engine, organisation_id: str, *, now: datetime) -> list[Jwk]:
    """The organisation's current and in-grace ed25519 public keys as JWKs."""
    if not _ORG_ID.fullmatch(organisation_id):
        return []
    with db.read_transaction(engine) as conn:
        rows = store.public_keys(conn, organisation_id, limit=MAX_KEYS)
    keys: dict[str, Jwk] = {}
    for current, previous, expires in rows:
        publics = [current]
        if previous and previous_secret_signs(expires, now):
            publics.append(previous)
        for public in publics:
            if public:
                entry = jwk(public)
                keys.setdefault(entry["kid"], entry)
    return list(keys.values())[:MAX_KEYS]


class KeySets:
    """A per-process cache of key sets (TTL ``ttl_seconds``, LRU-bounded)."""

    def __init__(
        self,
        engine: Engine,
        ttl_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self.ttl = ttl_seconds
        self._monotonic = monotonic
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, list[Jwk]]] = OrderedDict()

    def cached(self, organisation_id: str) -> list[Jwk] | None:
        """The cached answer, or None when it must be read (expired or absent)."""
        if not _ORG_ID.fullmatch(organisation_id):
            return []  # never a database read, never a cache entry
        with self._lock:
            entry = self._entries.get(organisation_id)
            if entry is None or entry[0] <= self._monotonic():
                return None
            self._entries.move_to_end(organisation_id)
            return entry[1]

    def load(self, organisation_id: str) -> list[Jwk]:
        """Read the key set (blocking: call from a worker thread) and cache it."""
        keys = key_set(self._engine, organisation_id, now=self._clock())
        with self._lock:
            self._entries[organisation_id] = (self._monotonic() + self.ttl, keys)
            self._entries.move_to_end(organisation_id)
            while len(self._entries) > CACHE_ENTRIES:
                self._entries.popitem(last=False)
        return keys

    def forget(self, organisation_id: str) -> None:
        """Drop the organisation's entry (its keys changed in this process)."""
        with self._lock:
            self._entries.pop(organisation_id, None)

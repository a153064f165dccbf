"""Process each webhook event once, although it is delivered at least once.

The service retries until it sees a 2xx, so a receiver will sometimes get the
same event twice (a timeout after the work was done, a replay, a rotation).
The docs' pattern is: keep processed event ids in a short-TTL store; an id
already there is answered 200 with no work; otherwise process, then record.

Plain check-then-process-then-mark has a race: a retry arriving while the
first request is still working passes the check and does the work again. So
the store holds two states per id:

    claimed (short lease, e.g. 60 s)  -> another request for it is IN_PROGRESS
    done    (long TTL, e.g. 24 h)     -> another request for it is a DUPLICATE

A request claims the id atomically (SET NX), processes, then marks it done.
If processing fails the claim is released, so the sender's retry processes it
again; if the process dies the lease expires and the same happens. A request
that finds the id in progress is told to come back later (503 + Retry-After),
not 200: the first attempt may still fail, and a 200 would lose the event.

``InMemoryStore`` suits one process; ``RedisStore`` shares the state between
processes and machines (``pip install webhooks-client[redis]``).
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from webhooks_client.receiver import (
    DEFAULT_TOLERANCE,
    HeaderSource,
    Secrets,
    WebhookVerificationError,
    challenge_answer,
    event_id,
    verify,
)

if TYPE_CHECKING:
    import redis

__all__ = [
    "Claim",
    "ClaimState",
    "DedupeStore",
    "Deduplicator",
    "InMemoryStore",
    "Outcome",
    "RedisStore",
    "Reply",
]

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(hours=24)
DEFAULT_LEASE = timedelta(seconds=60)


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # this caller now holds the id and must process it
    IN_PROGRESS = "in_progress"  # someone else holds an unexpired claim
    DONE = "done"  # already processed within the TTL


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    token: str = ""  # set when CLAIMED: proves ownership to release()


class DedupeStore(Protocol):
    """Where claims and done-markers live. Every method is atomic per key."""

    def claim(self, key: str, lease: timedelta) -> Claim: ...

    def mark_done(self, key: str, ttl: timedelta) -> None: ...

    def release(self, key: str, token: str) -> None:
        """Drop the claim if ``token`` still holds it (never a done marker)."""
        ...


def _new_token() -> str:
    return secrets.token_hex(8)


_DONE = "done"


class InMemoryStore:
    """A thread-safe TTL map for one process, bounded to ``max_entries``.

    ``clock`` returns monotonic seconds (injectable for tests): wall-clock jumps
    must neither expire nor resurrect entries. When full, the least recently
    written entries are dropped first; dropping a done marker early only means
    a late duplicate is processed again, which at-least-once allows.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # value, expires

    def __len__(self) -> int:
        """Live entries (claims and done markers)."""
        with self._lock:
            now = self._clock()
            self._purge(now)
            return sum(1 for _, expires in self._entries.values() if expires > now)

    def _purge(self, now: float) -> None:
        # Entries are kept in write order, so expired ones mostly gather at the
        # front; one that expires behind a longer-lived entry waits there, bounded
        # by max_entries, and reads treat it as absent meanwhile.
        while self._entries:
            key, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]

    def _put(self, key: str, value: str, ttl: timedelta, now: float) -> None:
        self._entries[key] = (value, now + ttl.total_seconds())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def _get(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def claim(self, key: str, lease: timedelta) -> Claim:
        with self._lock:
            now = self._clock()
            self._purge(now)
            current = self._get(key, now)
            if current == _DONE:
                return Claim(ClaimState.DONE)
            if current is not None:
                return Claim(ClaimState.IN_PROGRESS)
            token = _new_token()
            self._put(key, token, lease, now)
            return Claim(ClaimState.CLAIMED, token)

    def mark_done(self, key: str, ttl: timedelta) -> None:
        with self._lock:
            now = self._clock()
            self._purge(now)
            self._put(key, _DONE, ttl, now)

    def release(self, key: str, token: str) -> None:
        with self._lock:
            if self._get(key, self._clock()) == token:
                del self._entries[key]


# Delete the key only if it still holds our claim token (compare-and-delete).
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisStore:
    """Claims and done-markers in Redis (SET NX PX), shared by every process.

    ``client`` is a ``redis.Redis`` (sync). Keys are ``key_prefix + event id``
    and expire by themselves, so the store needs no cleanup.
    """

    def __init__(self, client: redis.Redis, *, key_prefix: str = "webhooks:dedupe:") -> None:
        self._redis = client
        self._prefix = key_prefix

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = "webhooks:dedupe:") -> RedisStore:
        """Connect to ``redis://...`` (needs the optional ``redis`` package)."""
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "RedisStore needs the redis package: pip install 'webhooks-client[redis]'"
            ) from exc
        return cls(redis.Redis.from_url(url), key_prefix=key_prefix)

    def close(self) -> None:
        """Close the client's connections (only needed for a store made by from_url)."""
        self._redis.close()

    def claim(self, key: str, lease: timedelta) -> Claim:
        name = self._prefix + key
        lease_ms = max(1, int(lease.total_seconds() * 1000))
        token = _new_token()
        for _ in range(3):  # the key may expire between SET NX and GET: try again
            if self._redis.set(name, token, nx=True, px=lease_ms):
                return Claim(ClaimState.CLAIMED, token)
            current: Any = self._redis.get(name)
            if current is None:
                continue
            if current in (_DONE, _DONE.encode()):
                return Claim(ClaimState.DONE)
            return Claim(ClaimState.IN_PROGRESS)
        return Claim(ClaimState.IN_PROGRESS)

    def mark_done(self, key: str, ttl: timedelta) -> None:
        self._redis.set(self._prefix + key, _DONE, px=max(1, int(ttl.total_seconds() * 1000)))

    def release(self, key: str, token: str) -> None:
        self._redis.eval(_RELEASE_SCRIPT, 1, self._prefix + key, token)


class Outcome(enum.Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


class Reply(NamedTuple):
    """What to answer the sender: status code, a short text, and extra headers."""

    status: int
    message: str
    headers: dict[str, str]


class Deduplicator:
    """Run a handler at most once per event id (within ``ttl``).

    ``run(event_id, fn)`` is the core; ``handle(secret, headers, body, fn)``
    adds signature verification and maps the result to an HTTP reply:

        verified, processed now       -> 200
        verified, already processed   -> 200, no work (the docs' pattern)
        verified, being processed     -> 503 + Retry-After (the sender retries)
        processing raised             -> 500, claim released (the retry reprocesses)
        bad signature / stale / junk  -> 400 (permanent: the sender does not retry)
    """

    def __init__(
        self,
        store: DedupeStore | None = None,
        *,
        ttl: timedelta = DEFAULT_TTL,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.store: DedupeStore = store if store is not None else InMemoryStore()
        self.ttl = ttl
        self.lease = lease

    def run(self, key: str, fn: Callable[[], object]) -> Outcome:
        """Call ``fn`` unless ``key`` is done or in progress. Exceptions propagate
        after the claim is released."""
        claim = self.store.claim(key, self.lease)
        if claim.state is ClaimState.DONE:
            return Outcome.DUPLICATE
        if claim.state is ClaimState.IN_PROGRESS:
            return Outcome.IN_PROGRESS
        try:
            fn()
        except BaseException:
            self.store.release(key, claim.token)
            raise
        self.store.mark_done(key, self.ttl)
        return Outcome.PROCESSED

    def handle(
        self,
        secret: Secrets,
        headers: HeaderSource,
        body: bytes | str,
        process: Callable[[dict[str, Any]], object],
        *,
        tolerance: timedelta = DEFAULT_TOLERANCE,
    ) -> Reply:
        """Verify, dedupe on the event id, process; return the reply to send.

        The service's ownership challenge (``webhook.verification``) is answered
        here, without ``process``: the reply echoes it, which proves the
        endpoint wants the traffic."""
        try:
            event = verify(secret, headers, body, tolerance=tolerance)
            key = event_id(headers)
            answer = challenge_answer(event)
        except WebhookVerificationError as exc:
            return Reply(400, f"rejected: {exc}", {})
        if answer is not None:
            return Reply(200, answer.decode(), {"content-type": "application/json"})
        try:
            outcome = self.run(key, lambda: process(event))
        except Exception:
            log.exception("webhook %s: processing failed; the sender will retry", key)
            return Reply(500, "processing failed", {})
        if outcome is Outcome.IN_PROGRESS:
            retry_after = str(max(1, int(self.lease.total_seconds())))
            return Reply(503, "in progress", {"Retry-After": retry_after})
        return Reply(200, outcome.value, {})

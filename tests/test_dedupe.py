"""Event-id dedupe: each event is processed once, a failure is processed again.

The same behaviour is checked on both stores; TTLs run on an injected clock for
the in-memory store and on real (millisecond) expiry for Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.support.polling import eventually
from webhooks_client import Deduplicator, InMemoryStore, Outcome, RedisStore, signed_headers
from webhooks_client.dedupe import ClaimState, DedupeStore

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[DedupeStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    prefix: str = request.getfixturevalue("redis_key_prefix")
    redis_store = RedisStore.from_url(request.getfixturevalue("redis_url"), key_prefix=prefix)
    yield redis_store
    redis_store.close()


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.calls = 0
        self.fail_times = fail_times

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise RuntimeError("handler failed")


def test_second_delivery_is_a_duplicate_and_does_no_work(store: DedupeStore) -> None:
    dedupe = Deduplicator(store)
    work = Recorder()
    assert dedupe.run("evt_1", work) is Outcome.PROCESSED
    assert dedupe.run("evt_1", work) is Outcome.DUPLICATE
    assert dedupe.run("evt_2", work) is Outcome.PROCESSED
    assert work.calls == 2


def test_failure_releases_the_claim_so_the_retry_processes(store: DedupeStore) -> None:
    dedupe = Deduplicator(store)
    work = Recorder(fail_times=1)
    with pytest.raises(RuntimeError):
        dedupe.run("evt_1", work)
    assert dedupe.run("evt_1", work) is Outcome.PROCESSED
    assert dedupe.run("evt_1", work) is Outcome.DUPLICATE
    assert work.calls == 2


def test_concurrent_delivery_while_processing_is_in_progress(store: DedupeStore) -> None:
    dedupe = Deduplicator(store)
    inner: list[Outcome] = []

    def work() -> None:
        # A retry arrives while the first request is still working.
        inner.append(dedupe.run("evt_1", Recorder()))

    assert dedupe.run("evt_1", work) is Outcome.PROCESSED
    assert inner == [Outcome.IN_PROGRESS]


def test_release_does_not_drop_someone_elses_claim_or_a_done_marker(store: DedupeStore) -> None:
    first = store.claim("evt_1", timedelta(minutes=1))
    assert first.state is ClaimState.CLAIMED
    store.release("evt_1", "not-the-token")
    assert store.claim("evt_1", timedelta(minutes=1)).state is ClaimState.IN_PROGRESS
    store.mark_done("evt_1", timedelta(minutes=1))
    store.release("evt_1", first.token)
    assert store.claim("evt_1", timedelta(minutes=1)).state is ClaimState.DONE


def test_many_threads_one_winner(store: DedupeStore) -> None:
    dedupe = Deduplicator(store)
    barrier = threading.Barrier(8)
    calls: list[int] = []
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait()
        outcome = dedupe.run("evt_race", lambda: calls.append(1))
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1
    assert outcomes.count(Outcome.PROCESSED) == 1
    assert set(outcomes) <= {Outcome.PROCESSED, Outcome.IN_PROGRESS, Outcome.DUPLICATE}


def test_memory_done_marker_expires_after_ttl() -> None:
    clock = FakeClock()
    dedupe = Deduplicator(InMemoryStore(clock=clock), ttl=timedelta(hours=24))
    work = Recorder()
    dedupe.run("evt_1", work)
    clock.advance(24 * 3600 - 1)
    assert dedupe.run("evt_1", work) is Outcome.DUPLICATE
    clock.advance(1)
    assert dedupe.run("evt_1", work) is Outcome.PROCESSED
    assert work.calls == 2


def test_memory_abandoned_claim_expires_after_lease() -> None:
    # A process that died mid-work never releases; the lease frees the id.
    clock = FakeClock()
    store = InMemoryStore(clock=clock)
    assert store.claim("evt_1", timedelta(seconds=60)).state is ClaimState.CLAIMED
    clock.advance(59)
    assert store.claim("evt_1", timedelta(seconds=60)).state is ClaimState.IN_PROGRESS
    clock.advance(1)
    assert store.claim("evt_1", timedelta(seconds=60)).state is ClaimState.CLAIMED


def test_memory_store_is_bounded_and_purges_expired() -> None:
    clock = FakeClock()
    store = InMemoryStore(max_entries=3, clock=clock)
    for i in range(5):
        store.mark_done(f"evt_{i}", timedelta(seconds=10))
    assert len(store) == 3
    # The oldest were dropped (a late duplicate of them would be processed again).
    assert store.claim("evt_0", timedelta(seconds=1)).state is ClaimState.CLAIMED
    assert store.claim("evt_4", timedelta(seconds=1)).state is ClaimState.DONE
    clock.advance(10)
    assert len(store) == 0
    # A short claim written after a long done marker expires behind it.
    store.mark_done("evt_long", timedelta(seconds=100))
    store.claim("evt_short", timedelta(seconds=1))
    clock.advance(2)
    assert len(store) == 1
    assert store.claim("evt_short", timedelta(seconds=1)).state is ClaimState.CLAIMED


def test_redis_markers_expire(redis_url: str, redis_key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=redis_key_prefix)
    try:
        _check_expiry(store)
    finally:
        store.close()


def _check_expiry(store: RedisStore) -> None:
    store.mark_done("evt_done", timedelta(milliseconds=150))
    store.claim("evt_claim", timedelta(milliseconds=150))
    assert store.claim("evt_done", timedelta(seconds=5)).state is ClaimState.DONE
    # Real expiry in Redis: poll rather than sleep a fixed time.
    assert eventually(
        lambda: store.claim("evt_claim", timedelta(seconds=5)).state is ClaimState.CLAIMED, 5
    )
    assert eventually(
        lambda: store.claim("evt_done", timedelta(seconds=5)).state is ClaimState.CLAIMED, 5
    )


def test_handle_maps_outcomes_to_replies() -> None:
    dedupe = Deduplicator()
    body = b'{"id": "evt_1", "type": "reward.claimed", "data": {}}'
    headers = signed_headers(SECRET, body, msg_id="evt_1")
    seen: list[str] = []

    assert dedupe.handle(SECRET, headers, body, lambda e: seen.append(e["id"])).status == 200
    again = dedupe.handle(SECRET, headers, body, lambda e: seen.append(e["id"]))
    assert (again.status, again.message) == (200, "duplicate")
    assert seen == ["evt_1"]

    bad = dedupe.handle(SECRET, headers, body + b" ", lambda e: seen.append("x"))
    assert bad.status == 400

    def boom(event: dict[str, object]) -> None:
        raise RuntimeError("database down")

    other = b'{"id": "evt_2"}'
    other_headers = signed_headers(SECRET, other, msg_id="evt_2")
    assert dedupe.handle(SECRET, other_headers, other, boom).status == 500
    assert dedupe.handle(SECRET, other_headers, other, lambda e: seen.append("evt_2")).status == 200

    def reenter(event: dict[str, object]) -> None:
        reply = dedupe.handle(SECRET, headers3, third, lambda e: None)
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "60"

    third = b'{"id": "evt_3"}'
    headers3 = signed_headers(SECRET, third, msg_id="evt_3")
    assert dedupe.handle(SECRET, headers3, third, reenter).status == 200
    assert seen == ["evt_1", "evt_2"]

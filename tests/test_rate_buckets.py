"""The shared token buckets (storage/rate_buckets.py, core/limits.py) on both
databases: the arithmetic, pruning, and that concurrent takers — threads here,
processes in tests/test_auth_shared.py — never get more than the bucket holds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine

from webhooks_service.core.limits import SharedBuckets, SharedLimiter
from webhooks_service.storage import db
from webhooks_service.storage import rate_buckets as store


def test_take_refill_give_and_prune(engine: Engine) -> None:
    with db.write_transaction(engine) as conn:
        first = store.take(conn, "t:a", want=3, rate=2.0, capacity=5.0, now=100.0)
        assert (first.granted, first.tokens, first.wait) == (3, 2.0, 0.0)
        # only 2 left: at_least=3 takes nothing and says how long for one token
        none = store.take(conn, "t:a", want=3, rate=2.0, capacity=5.0, now=100.0, at_least=3)
        assert none.granted == 0 and none.tokens == 2.0
        two = store.take(conn, "t:a", want=9, rate=2.0, capacity=5.0, now=100.0)
        assert (two.granted, two.wait) == (2, 0.5)
        # 1 s later: 2 tokens back; 100 s later: full, never beyond
        assert store.take(conn, "t:a", want=9, rate=2.0, capacity=5.0, now=101.0).granted == 2
        assert store.take(conn, "t:a", want=9, rate=2.0, capacity=5.0, now=201.0).granted == 5
        store.give(conn, "t:a", 99, rate=2.0, capacity=5.0, now=201.0)
        assert store.take(conn, "t:a", want=9, rate=2.0, capacity=5.0, now=201.0).granted == 5
        store.take(conn, "t:b", want=1, rate=1.0, capacity=10.0, now=201.0)  # full at 202
        # t:a is empty at 201 and full again at 203.5; t:b at 202
        assert store.prune(conn, now=202.5) == 1
        assert store.prune(conn, now=204.0) == 1
        assert store.take(conn, "t:a", want=9, rate=2.0, capacity=5.0, now=204.0).granted == 5


def test_concurrent_takers_never_get_more_than_the_bucket_holds(engine: Engine) -> None:
    buckets = SharedBuckets(engine, clock=lambda: 1000.0)  # no refill while they race

    def take_one(_: int) -> int:
        return buckets.take("t:race", want=1, rate=1.0, capacity=40.0).granted

    with ThreadPoolExecutor(8) as pool:
        granted = sum(pool.map(take_one, range(100)))
    assert granted == 40


@pytest.mark.parametrize("rate", [50.0, 5.0])
def test_a_limiter_spends_leases_locally_and_never_more_than_granted(
    engine: Engine, rate: float
) -> None:
    now = [0.0]
    buckets = SharedBuckets(engine, clock=lambda: 5000.0)
    limiter = SharedLimiter(buckets, "t", rate, 100, clock=lambda: now[0])
    other = SharedLimiter(buckets, "t", rate, 100, clock=lambda: now[0])  # another process

    async def calls() -> int:
        allowed = 0
        for n in range(300):
            allowed += (await (limiter if n % 2 else other).acquire("key_x")) is None
        return allowed

    assert asyncio.run(calls()) == 100  # the burst, shared, with no time passing
    assert limiter.lease == max(1, min(25, int(rate * 0.1 + 0.999)))

"""Ordered delivery benchmark (``make bench-ordering``, part of ``make bench``; issue 22).

The same events (N, ordering keys ``user-0`` … ``user-999`` in turn) to one
endpoint on a fast local receiver, once to an **unordered** configuration and
once to an **ordered** one, alternating rounds in the same run (medians), on
SQLite and PostgreSQL. Two ways in:

- **live**: the worker runs while publish (PublishEvents batches of 500, in
  this process like ``webhooks serve``) hands deliveries straight over; the
  rate is N over the time from the first publish to the last attempt logged;
- **backlog**: N published with no worker running, then drained.

An ordered endpoint keeps at most one delivery per key in flight (1,000 keys:
up to 1,000 at once, more than the worker's 256 slots), so what it costs is
the promotion of each key's next delivery when its head ends (in the same
finish transaction, claimed for the worker at once). Target: ordered >= 0.8x
the unordered rate, every event delivered, each key's receipts in sequence.

Not a test: figures depend on the machine. Run ``make bench-ordering`` or
``.venv/bin/python scripts/bench_ordering.py [--events N] [--rounds R]
[--backends sqlite,postgres] [--modes live,backlog]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from typing import Any

import sqlalchemy as sa
from bench_delivery import (
    PAD,
    Rx,
    add_config,
    claim,
    count_attempts,
    drop_database,
    fresh_database,
    receiver_main,
)
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import orgs, publishing
from webhooks_service.delivery.runner import run_worker
from webhooks_service.delivery.worker import LocalWorker

KEYS = 1000
TARGET = 0.8


def items(org: str, start: int, size: int) -> list[publishing.EventInput]:
    return [
        publishing.EventInput(
            org, "", "reward.claimed", None, claim(i, PAD), ordering_key=f"user-{i % KEYS}"
        )
        for i in range(start, start + size)
    ]


async def wait_logged(engine: Engine, config_id: str, n: int, started: float) -> float:
    while True:
        done = await asyncio.to_thread(count_attempts, engine, config_id)
        if done >= n:
            return time.perf_counter() - started
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"only {done}/{n} attempts after 300 s")
        await asyncio.sleep(0.02)


async def one_round(
    engine: Engine, settings: Settings, url: str, n: int, *, ordered: bool, live: bool
) -> tuple[float, float]:
    """Deliveries per second of one round (a fresh organisation and endpoint), and
    this process's CPU milliseconds per delivery (publish + worker; on SQLite
    that is all of it, on PostgreSQL the server's share is not in it)."""
    org = orgs.create_org(engine, "bench-ordering").id
    config_id = add_config(engine, settings, org, url, ordered=ordered)
    local = LocalWorker()
    stop = asyncio.Event()

    async def publish_all() -> None:
        for start in range(0, n, publishing.MAX_BATCH):
            batch = items(org, start, min(publishing.MAX_BATCH, n - start))
            await publishing.publish_events(
                engine,
                settings,
                org,
                batch,
                batch=True,
                notify=local.notify if live else None,
                lend=local.lend if live else None,
            )

    if not live:
        await publish_all()
    cpu = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(run_worker(settings, engine, stop, wakeup=local.wakeup, local=local))
    try:
        if live:
            for _ in range(2000):  # the worker attaches itself once it runs
                if local.worker is not None:
                    break
                await asyncio.sleep(0.005)
            started = time.perf_counter()
            cpu = time.process_time()
            await publish_all()
        elapsed = await wait_logged(engine, config_id, n, started)
        cpu = time.process_time() - cpu
    finally:
        stop.set()
        await task
    return n / elapsed, 1000 * cpu / n


def in_sequence(engine: Engine) -> tuple[int, int]:
    """(keys checked, keys whose attempts were made out of sequence order) on the
    ordered endpoints: by attempt id (the order attempts were recorded)."""
    query = sa.text(
        """
        SELECT a.config_id, e.ordering_key, e.sequence FROM delivery_attempts a
        JOIN events e ON e.pk = a.event_pk JOIN webhook_configs c ON c.id = a.config_id
        WHERE c.ordered ORDER BY a.config_id, a.id
        """
    )
    last: dict[tuple[str, str], int] = {}
    bad: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for config_id, ordering_key, sequence in conn.execute(query):
            key = (config_id, ordering_key)
            if sequence < last.get(key, 0):
                bad.add(key)
            last[key] = sequence
    return len(last), len(bad)


async def run_mode(
    engine: Engine, settings: Settings, url: str, n: int, rounds: int, live: bool
) -> dict[str, Any]:
    plain: list[float] = []
    ordered: list[float] = []
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for is_ordered, rates in ((False, plain), (True, ordered)):
            rate, ms = await one_round(engine, settings, url, n, ordered=is_ordered, live=live)
            rates.append(rate)
            cpu[is_ordered].append(ms)
    return {
        "unordered": statistics.median(plain),
        "ordered": statistics.median(ordered),
        "unordered_rounds": plain,
        "ordered_rounds": ordered,
        "unordered_cpu_ms": statistics.median(cpu[False]),
        "ordered_cpu_ms": statistics.median(cpu[True]),
    }


def run_backend(backend: str, args: argparse.Namespace, port: int, tmp: str) -> bool:
    url, engine = fresh_database(backend, args.pg_admin, tmp)
    settings = dataclasses.replace(
        Settings(), database_url=url, allowed_target_networks=("127.0.0.0/8",)
    )
    ok = True
    try:
        for mode in args.modes:
            figures = asyncio.run(
                run_mode(
                    engine,
                    settings,
                    f"http://127.0.0.1:{port}/",
                    args.events,
                    args.rounds,
                    mode == "live",
                )
            )
            ratio = figures["ordered"] / figures["unordered"]
            passed = ratio >= TARGET
            ok = ok and passed
            print(
                f"{backend:8} {mode:8} unordered {figures['unordered']:7.0f}/s  "
                f"ordered ({KEYS} keys) {figures['ordered']:7.0f}/s  "
                f"ratio {ratio:.2f} (target >= {TARGET}) {'OK' if passed else 'BELOW'}  "
                f"rounds {[round(r) for r in figures['unordered_rounds']]} / "
                f"{[round(r) for r in figures['ordered_rounds']]}  "
                f"CPU ms/delivery here {figures['unordered_cpu_ms']:.3f} / "
                f"{figures['ordered_cpu_ms']:.3f}",
                flush=True,
            )
        keys, bad = in_sequence(engine)
        print(f"{backend:8} ordered keys checked {keys}, out of sequence {bad}", flush=True)
        ok = ok and bad == 0
    finally:
        engine.dispose()
        drop_database(url, args.pg_admin)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--modes", default="live,backlog")
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get(
            "WEBHOOKS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    parent, child = mp.Pipe()
    receiver = mp.Process(target=receiver_main, args=(child,), daemon=True)
    receiver.start()
    port, _hang = parent.recv()
    rx = Rx(parent)
    ok = True
    print(
        f"ordered vs unordered, {args.events} events over {KEYS} ordering keys, "
        f"medians of {args.rounds} alternating rounds",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in [b for b in args.backends.split(",") if b]:
                ok = run_backend(backend, args, port, tmp) and ok
    finally:
        rx.ask("stop")
        receiver.join(5)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

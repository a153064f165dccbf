"""Delivery benchmark (``make bench``): throughput, latency and isolation.

One process tree: this process runs the service parts (publish use case, gRPC
API, delivery worker, exactly the code ``webhooks serve`` runs); a
subprocess runs a fast raw-asyncio HTTP receiver (plus a port that accepts
connections and never answers); another subprocess publishes over gRPC for
the latency phase. For SQLite and PostgreSQL it prints:

1. **throughput**: a backlog of N published events drained by the worker
   (claim, sign, POST, log every attempt) to the fast receiver, against a raw
   aiohttp loop posting the same signed bodies at the same concurrency to the
   same receiver (aiohttp is the fastest client here, see docs/decisions.md).
   Targets: ratio >= 0.5 (SQLite) / >= 0.4 (PostgreSQL); every attempt logged.
2. **latency**: publish-to-receipt p50/p99 at a steady 200 events/s over gRPC
   (targets 5 ms / 25 ms).
3. **isolation**: the healthy endpoint's throughput with a second endpoint
   that never answers, against without (loss <= 10 %).
4. **fairness** (``make bench-fairness``; not in the default phases): the
   abuse of issue 9. Organisation A has 100 configurations on a receiver that
   accepts connections and never answers and fans 12 events out to them
   (1,200 deliveries, retried as they time out), while organisation B
   publishes 20 events/s over gRPC to a healthy receiver. Prints B's
   publish-to-receipt p50/p99 without and with A's load (default settings:
   256 in flight, 16 per destination, 15 s attempt timeout). Targets: B's
   p99 under load <= 250 ms and <= 3x its unloaded p99.

Not a test: figures depend on the machine. Run: ``make bench`` or
``.venv/bin/python scripts/bench_delivery.py [--events N] [--backends sqlite,postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from webhooks_service.config import Settings
from webhooks_service.core import configs, event_body, keys, orgs, publishing
from webhooks_service.delivery.recorder import FLUSH_DELAY_SECONDS, FLUSH_ROWS
from webhooks_service.delivery.runner import run_worker
from webhooks_service.delivery.signing import webhook_headers
from webhooks_service.delivery.worker import LocalWorker
from webhooks_service.domain import SigningScheme
from webhooks_service.storage import db
from webhooks_service.storage.models import utcnow

CONCURRENCY = 64
PHASES = ("throughput", "latency", "isolation", "fairness")
DEFAULT_PHASES = ("throughput", "latency", "isolation")
PAD = "x" * 850  # ~1 KiB bodies, like the brief's measurements


def claim(i: int, pad: str) -> dict[str, object]:
    """reward.claimed data (valid for its payload message), padded to size."""
    return {
        "user_id": "usr_1",
        "reward_id": f"rwd_{i}",
        "points": "10",
        "community_id": pad,
        "claimed_at": "2026-11-27T10:15:00Z",
    }


RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


# -- receiver subprocess --------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.count = 0
        self.times: dict[str, float] = {}


class _Fast(asyncio.Protocol):
    """Keep-alive HTTP/1.1 with content-length bodies; answers 200 'ok'."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15 : j if j >= 0 else None])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            k = head.find(b"webhook-id:")
            if k >= 0:
                j = head.find(b"\r\n", k)
                self.stats.times[self.buf[k + 11 : j if j >= 0 else end].strip().decode()] = (
                    time.time()
                )
            self.buf = self.buf[total:]
            self.stats.count += 1
            assert self.transport is not None
            self.transport.write(RESPONSE)


class _Hang(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats = _Stats()
    fast = await loop.create_server(lambda: _Fast(stats), "127.0.0.1", 0, backlog=1024)
    hang = await loop.create_server(_Hang, "127.0.0.1", 0, backlog=1024)
    conn.send((fast.sockets[0].getsockname()[1], hang.sockets[0].getsockname()[1]))
    while True:
        cmd = await asyncio.to_thread(conn.recv)
        if cmd == "count":
            conn.send(stats.count)
        elif cmd == "times":
            conn.send(stats.times)
        elif cmd == "reset":
            stats.count = 0
            stats.times = {}
            conn.send("ok")
        else:
            fast.close()
            hang.close()
            conn.send("stopped")
            return


def receiver_main(conn: Connection) -> None:
    asyncio.run(_serve(conn))


# -- publisher subprocess (latency phase) ----------------------------------------


def publisher_main(conn: Connection, target: str, key: str, org: str, rate: float, n: int) -> None:
    from webhooks_client import PublisherClient

    sent: dict[str, float] = {}
    with PublisherClient(target, key) as client:
        client.publish_event(org, "reward.claimed", claim(0, ""), id="warmup")
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(n):
            due = start + i * interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            event_id = f"lat_{i}"
            sent[event_id] = time.time()
            client.publish_event(org, "reward.claimed", claim(i, PAD[:200]), id=event_id)
    conn.send(sent)


# -- helpers ------------------------------------------------------------------------


class Rx:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def ask(self, cmd: str) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()


def fresh_database(
    backend: str, pg_admin: str, tmp: str, migrate: bool = True
) -> tuple[str, Engine]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db"
    else:
        name = f"wh_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        url = make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    if migrate:
        db.upgrade(engine)
    return url, engine


def drop_database(url: str, pg_admin: str) -> None:
    if url.startswith("sqlite"):
        return
    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def newest_attempt_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT max(id) FROM delivery_attempts")).scalar() or 0)


def count_attempts(engine: Engine, config_id: str | None = None, after_id: int = 0) -> int:
    q = "SELECT count(*) FROM delivery_attempts WHERE id > :after"
    params: dict[str, Any] = {"after": after_id}
    if config_id:
        q += " AND config_id = :c"
        params["c"] = config_id
    with engine.connect() as conn:
        return int(conn.execute(sa.text(q), params).scalar_one())


def add_config(
    engine: Engine,
    settings: Settings,
    org: str,
    url: str,
    signing_scheme: SigningScheme = SigningScheme.HMAC_SHA256,
    *,
    ordered: bool = False,
) -> str:
    result = configs.put_config(
        engine,
        settings,
        org,
        config_id="",
        url=url,
        event_types=["*"],
        secret=None,
        enabled=None,
        description="bench",
        ordered=ordered,
        signing_scheme=signing_scheme,
    )
    return result.config.id


async def publish_backlog(engine: Engine, settings: Settings, org: str, n: int) -> float:
    started = time.perf_counter()
    for offset in range(0, n, publishing.MAX_BATCH):
        size = min(publishing.MAX_BATCH, n - offset)
        items = [
            publishing.EventInput(org, "", "reward.claimed", None, claim(0, PAD))
            for _ in range(size)
        ]
        await publishing.publish_events(engine, settings, org, items, batch=True)
    return n / (time.perf_counter() - started)


async def drain(
    engine: Engine, settings: Settings, expected: int, config_id: str | None = None
) -> tuple[float, float]:
    """Run the worker until ``expected`` more attempts (to ``config_id``: in all) are logged.

    Returns (deliveries per second, seconds).
    """
    stop = asyncio.Event()
    # Progress is polled from this process, so keep the poll cheap: without a
    # config filter, watch the newest attempt id (one primary-key lookup) and
    # only count exactly once it says the round may be complete.
    before = 0 if config_id else await asyncio.to_thread(newest_attempt_id, engine)
    started = time.perf_counter()
    task = asyncio.create_task(run_worker(settings, engine, stop))
    try:
        while True:
            await asyncio.sleep(0.02)
            if not config_id:
                newest = await asyncio.to_thread(newest_attempt_id, engine)
                if newest - before < expected:
                    continue
            done = await asyncio.to_thread(count_attempts, engine, config_id, before)
            if done >= expected:
                break
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"only {done}/{expected} attempts after 300 s")
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await task
    return expected / elapsed, elapsed


# One attempt of the raw loop: (event id, HTTP status, when).
RawAttempt = tuple[str, int, datetime]


async def raw_loop(
    port: int, n: int, record: Callable[[list[RawAttempt]], object] | None = None
) -> float:
    """The fastest client available here (aiohttp) posting the same signed bodies.

    With ``record``, the *durable* raw loop (bench_cpu, issue 25): every
    attempt goes into a buffer that one task hands to ``record`` in a thread,
    in batches as the service's recorder writes them (``FLUSH_ROWS`` waiting,
    or ``FLUSH_DELAY_SECONDS`` after the first); the rate counts the last batch.
    """
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    url = f"http://127.0.0.1:{port}/"
    left = n
    rows: list[RawAttempt] = []
    waiting = asyncio.Event()
    done = False

    async def flusher() -> None:
        nonlocal rows
        assert record is not None
        while not done or rows:
            await waiting.wait()
            waiting.clear()
            if len(rows) < FLUSH_ROWS and not done:
                await asyncio.sleep(FLUSH_DELAY_SECONDS)
            if rows:
                batch, rows = rows, []
                await asyncio.to_thread(record, batch)

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        headers={"content-type": "application/json"},
    ) as session:

        async def one_client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                event_id = f"raw_{left}"
                now = utcnow()
                body = event_body.build_payload(
                    event_id,
                    "reward.claimed",
                    now,
                    json.dumps(claim(0, PAD), separators=(",", ":")),
                ).encode()
                headers = webhook_headers([secret], event_id, int(time.time()), body)
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                if record is not None:
                    rows.append((event_id, resp.status, now))
                    waiting.set()

        started = time.perf_counter()
        flushing = asyncio.create_task(flusher()) if record is not None else None
        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
        if flushing is not None:
            done = True
            waiting.set()
            await flushing
        return n / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- phases ---------------------------------------------------------------------------


async def throughput_phase(
    rx: Rx, fast_port: int, settings: Settings, engine: Engine, n: int, rounds: int
) -> dict[str, Any]:
    """Alternate raw-client rounds and worker rounds (medians), so that load from
    anything else on the machine weighs on both sides alike."""
    org = orgs.create_org(engine, "bench").id
    add_config(engine, settings, org, f"http://127.0.0.1:{fast_port}/")
    raw_rates: list[float] = []
    rates: list[float] = []
    publish_rates: list[float] = []
    received = 0
    for _ in range(rounds):
        raw_rates.append(await raw_loop(fast_port, n))
        publish_rates.append(await publish_backlog(engine, settings, org, n))
        rx.ask("reset")
        rate, _ = await drain(engine, settings, n)
        rates.append(rate)
        received += rx.ask("count")
    with engine.connect() as conn:
        delivered = conn.execute(
            sa.text("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
        ).scalar_one()
        logged = conn.execute(sa.text("SELECT count(*) FROM delivery_attempts")).scalar_one()
    return {
        "publish_rate": statistics.median(publish_rates),
        "rate": statistics.median(rates),
        "rates": rates,
        "raw_rate": statistics.median(raw_rates),
        "raw_rates": raw_rates,
        "received": received,
        "delivered": delivered,
        "logged": logged,
        "total": n * rounds,
    }


async def latency_phase(
    rx: Rx, fast_port: int, settings: Settings, engine: Engine, rate: float, n: int
) -> dict[str, float]:
    from webhooks_service.api.server import start_server

    org = orgs.create_org(engine, "latency").id
    add_config(engine, settings, org, f"http://127.0.0.1:{fast_port}/lat")
    key = keys.create_key(engine, org, ["events:publish"])[1]
    local = LocalWorker()  # as `webhooks serve` wires it: publish hands over to the worker
    stop = asyncio.Event()
    server = await start_server(
        settings, engine, listen="127.0.0.1:0", notify=local.notify, lend=local.lend
    )
    worker = asyncio.create_task(run_worker(settings, engine, stop, local=local))
    rx.ask("reset")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=publisher_main, args=(child, server.target, key, org, rate, n), daemon=True
    )
    proc.start()
    sent: dict[str, float] = await asyncio.to_thread(parent.recv)
    proc.join()
    deadline = time.monotonic() + 10
    received: dict[str, float] = {}
    while time.monotonic() < deadline:
        received = rx.ask("times")
        if all(k in received for k in sent):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    await server.stop(grace=1.0)
    lat = [(received[k] - t) * 1000 for k, t in sent.items() if k in received]
    return {
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "mean": statistics.fmean(lat),
        "lost": len(sent) - len(lat),
    }


async def isolation_phase(
    hang_port: int, fast_port: int, settings: Settings, engine: Engine, n: int, rounds: int
) -> tuple[float, float]:
    """Healthy-endpoint throughput (alone, with a hanging endpoint), alternating
    ``rounds`` rounds each (medians) so that drifting machine load hits both
    alike."""
    alone: list[float] = []
    together: list[float] = []
    for round_ in range(2 * rounds):
        with_hang = round_ % 2 == 1
        org = orgs.create_org(engine, f"isolation-{round_}").id
        healthy = add_config(engine, settings, org, f"http://127.0.0.1:{fast_port}/healthy")
        hanging = ""
        if with_hang:
            hanging = add_config(engine, settings, org, f"http://127.0.0.1:{hang_port}/hang")
        await publish_backlog(engine, settings, org, n)
        rate, _ = await drain(engine, settings, n, config_id=healthy)
        (together if with_hang else alone).append(rate)
        if hanging:  # leave nothing of the hanging endpoint for the next round
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE deliveries SET status = 'failed' "
                        "WHERE config_id = :c AND status = 'pending'"
                    ),
                    {"c": hanging},
                )
    return statistics.median(alone), statistics.median(together)


async def fairness_run(
    rx: Rx,
    fast_port: int,
    hang_port: int,
    settings: Settings,
    engine: Engine,
    seconds: float,
    fanout: int,
    loaded: bool,
) -> dict[str, float]:
    """One window of B publishing 20 ev/s (with A's flood if ``loaded``)."""
    from webhooks_service.api.server import start_server

    tag = uuid.uuid4().hex[:6]
    org_b = orgs.create_org(engine, f"fair-b-{tag}").id
    add_config(engine, settings, org_b, f"http://127.0.0.1:{fast_port}/b")
    key_b = keys.create_key(engine, org_b, ["events:publish"])[1]
    org_a = ""
    if loaded:
        org_a = orgs.create_org(engine, f"fair-a-{tag}").id
        for i in range(100):  # the per-organisation maximum, all on the hanging receiver
            add_config(engine, settings, org_a, f"http://127.0.0.1:{hang_port}/a/{i}")
    local = LocalWorker()
    stop = asyncio.Event()
    server = await start_server(
        settings, engine, listen="127.0.0.1:0", notify=local.notify, lend=local.lend
    )
    worker = asyncio.create_task(run_worker(settings, engine, stop, local=local))
    await asyncio.sleep(0.5)
    rx.ask("reset")
    if loaded:  # 12 events x 100 configurations, as A's own publisher would send them
        items = [
            publishing.EventInput(org_a, "", "reward.claimed", None, claim(i, PAD[:200]))
            for i in range(fanout)
        ]
        await publishing.publish_events(
            engine, settings, org_a, items, batch=True, notify=local.notify, lend=local.lend
        )
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    rate = 20.0
    proc = ctx.Process(
        target=publisher_main,
        args=(child, server.target, key_b, org_b, rate, int(rate * seconds)),
        daemon=True,
    )
    proc.start()
    sent: dict[str, float] = await asyncio.to_thread(parent.recv)
    proc.join()
    deadline = time.monotonic() + 10
    received: dict[str, float] = {}
    while time.monotonic() < deadline:
        received = rx.ask("times")
        if all(k in received for k in sent):
            break
        await asyncio.sleep(0.05)
    a_attempts = 0
    if loaded:
        with engine.connect() as conn:
            a_attempts = int(
                conn.execute(
                    sa.text("SELECT count(*) FROM delivery_attempts WHERE organisation_id = :o"),
                    {"o": org_a},
                ).scalar_one()
            )
    stop.set()
    await worker
    await server.stop(grace=1.0)
    if loaded:  # leave nothing of A's flood for the next run
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE deliveries SET status = 'failed' "
                    "WHERE organisation_id = :o AND status = 'pending'"
                ),
                {"o": org_a},
            )
    lat = [(received[k] - t) * 1000 for k, t in sent.items() if k in received]
    return {
        "p50": percentile(lat, 0.50) if lat else float("inf"),
        "p99": percentile(lat, 0.99) if lat else float("inf"),
        "max": max(lat) if lat else float("inf"),
        "lost": len(sent) - len(lat),
        "a_deliveries": 100 * fanout if loaded else 0,
        "a_attempts": a_attempts,
    }


def bench_settings(url: str) -> Settings:
    """The service's settings for a benchmark on ``url`` (loopback receivers allowed)."""
    return Settings(
        database_url=url,
        allowed_target_networks=("127.0.0.0/8",),
        max_in_flight=256,
        max_in_flight_per_endpoint=CONCURRENCY,
        shutdown_grace=0.5,
        attempt_timeout=15.0,
    )


def run_backend(
    backend: str, args: argparse.Namespace, rx: Rx, fast: int, hang: int, tmp: str
) -> dict[str, Any]:
    url, engine = fresh_database(backend, args.postgres_url, tmp)
    settings = bench_settings(url)
    phases = args.phases
    out: dict[str, Any] = {}
    try:
        if "throughput" in phases:
            out = asyncio.run(
                throughput_phase(rx, fast, settings, engine, args.events, args.rounds)
            )
        if "latency" in phases:
            out["latency"] = [
                asyncio.run(
                    latency_phase(
                        rx, fast, settings, engine, args.rate, int(args.rate * args.seconds)
                    )
                )
                for _ in range(args.latency_runs)
            ]
        if "isolation" in phases:
            out["alone_rate"], out["isolated_rate"] = asyncio.run(
                isolation_phase(hang, fast, settings, engine, args.events // 2, args.rounds)
            )
        if "fairness" in phases:
            # The service's defaults (256 in flight, 16 per destination, 15 s timeout).
            fair = Settings(
                database_url=url, allowed_target_networks=("127.0.0.0/8",), shutdown_grace=0.5
            )
            out["fairness"] = [
                asyncio.run(
                    fairness_run(
                        rx,
                        fast,
                        hang,
                        fair,
                        engine,
                        args.fairness_seconds,
                        args.fairness_fanout,
                        loaded,
                    )
                )
                for loaded in (False, True)
            ]
        return out
    finally:
        engine.dispose()
        drop_database(url, args.postgres_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="latency phase events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase duration")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help="comma-separated subset of " + ",".join(PHASES) + " (e.g. --phases latency)",
    )
    parser.add_argument(
        "--latency-runs", type=int, default=1, help="repeat the latency phase (each printed)"
    )
    parser.add_argument(
        "--fairness-seconds", type=float, default=20.0, help="fairness phase: B publishes this long"
    )
    parser.add_argument(
        "--fairness-fanout", type=int, default=12, help="fairness phase: A's events x 100 configs"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "WEBHOOKS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    args.phases = set(args.phases.split(","))
    if not args.phases <= set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    receiver = ctx.Process(target=receiver_main, args=(child,), daemon=True)
    receiver.start()
    fast, hang = parent.recv()
    rx = Rx(parent)
    targets = {"sqlite": 0.5, "postgres": 0.4}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            r = run_backend(backend, args, rx, fast, hang, tmp)
            checks: dict[str, bool] = {}
            print(
                f"\n== {backend} ({args.rounds} rounds of {args.events} events, "
                f"c={CONCURRENCY}; medians) =="
            )
            if "rate" in r:
                ratio = r["rate"] / r["raw_rate"]
                checks["ratio"] = ratio >= targets[backend]
                checks["every attempt logged"] = (
                    r["logged"] == r["delivered"] == r["total"] <= r["received"]
                )
                print(
                    f"publish (batches of 500, one transaction each): {r['publish_rate']:,.0f} ev/s"
                )
                print(
                    f"end-to-end deliveries/s: {r['rate']:,.0f}   raw aiohttp loop: "
                    f"{r['raw_rate']:,.0f}/s   ratio {ratio:.2f} (target >= {targets[backend]})"
                )
                print(
                    "  rounds: worker "
                    + " ".join(f"{x:,.0f}" for x in r["rates"])
                    + " / raw "
                    + " ".join(f"{x:,.0f}" for x in r["raw_rates"])
                )
                print(
                    f"attempts logged {r['logged']}, delivered {r['delivered']}, "
                    f"received {r['received']}"
                )
            for lat in r.get("latency", []):
                checks["p50"] = checks.get("p50", True) and lat["p50"] <= 5
                checks["p99"] = checks.get("p99", True) and lat["p99"] <= 25
                print(
                    f"publish-to-receipt at {args.rate:.0f} ev/s over gRPC: "
                    f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                    f"mean {lat['mean']:.1f} ms, lost {lat['lost']:.0f}"
                )
            if "alone_rate" in r:
                loss = 1 - r["isolated_rate"] / r["alone_rate"]
                checks["isolation"] = loss <= 0.10
                print(
                    f"healthy endpoint with a hanging one: {r['isolated_rate']:,.0f}/s vs "
                    f"{r['alone_rate']:,.0f}/s alone (alternating rounds), "
                    f"loss {loss:.1%} (target <= 10%)"
                )
            if "fairness" in r:
                alone, loaded = r["fairness"]
                checks["fairness p99 <= 250 ms"] = loaded["p99"] <= 250
                checks["fairness p99 <= 3x unloaded"] = loaded["p99"] <= 3 * alone["p99"]
                for name, f in (("B alone", alone), ("B with A's flood", loaded)):
                    extra = ""
                    if f["a_deliveries"]:
                        extra = (
                            f"; A: {f['a_deliveries']:.0f} deliveries to a never-answering "
                            f"receiver, {f['a_attempts']:.0f} attempts logged meanwhile"
                        )
                    print(
                        f"fairness, {name}: B publish-to-receipt at 20 ev/s p50 {f['p50']:.1f} ms, "
                        f"p99 {f['p99']:.1f} ms, max {f['max']:.1f} ms, lost {f['lost']:.0f}{extra}"
                    )
                print(
                    f"fairness: B p99 under load {loaded['p99']:.1f} ms = "
                    f"{loaded['p99'] / alone['p99']:.2f}x unloaded (targets <= 250 ms, <= 3x)"
                )
            ok = ok and all(checks.values())
            print(
                "checks: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in checks.items())
            )
            sys.stdout.flush()
    rx.ask("stop")
    receiver.join(5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

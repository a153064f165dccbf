"""CPU per delivery of ``webhooks worker`` / ``webhooks serve`` on asyncio vs uvloop
(issue 15; docs/decisions.md quotes the figures).

Not a test. Per round and loop (rounds alternate the loops, so that drift on a
shared machine hits both alike), on a fresh PostgreSQL database (or SQLite):

* **worker**: publish a backlog of N events (in this process), start
  ``webhooks worker`` with ``WEBHOOKS_EVENT_LOOP`` set, and read its user+sys
  CPU (``/proc/<pid>/stat``) from its "running" line until every delivery is
  logged: start-up (imports, migrations check) is not counted.
* **serve**: start ``webhooks serve``, publish N events over gRPC
  (PublishEvents, batches of 100) while its in-process worker delivers them;
  the serve process's CPU from ready to drained, per event: gRPC publish and
  delivery together.

Deliveries go to bench_delivery's fast raw-asyncio receiver (a subprocess).
Run: ``.venv/bin/python scripts/bench_event_loop.py [--events 10000] [--rounds 3]
[--modes worker,serve] [--backend postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from bench_cpu import proc_cpu
from bench_delivery import (
    PAD,
    Rx,
    add_config,
    claim,
    drop_database,
    fresh_database,
    receiver_main,
)
from sqlalchemy.engine import Engine

from webhooks_client import PublisherClient, make_publish_request
from webhooks_service.config import Settings
from webhooks_service.core import keys, orgs, publishing

WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")
LOOPS = ("asyncio", "uvloop")


def cpu_seconds(pid: int) -> float:
    got = proc_cpu(pid)
    if got is None:
        raise RuntimeError(f"process {pid} is gone")
    return got[1]


def attempts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM delivery_attempts")).scalar_one())


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("delivery_attempts", "deliveries", "events"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


def start(
    command: str, url: str, loop: str, log: Path
) -> tuple[subprocess.Popen[bytes], float, str]:
    """The child, its CPU seconds at its ready line, and the gRPC target (serve)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env |= {
        "WEBHOOKS_DATABASE_URL": url,
        "WEBHOOKS_EVENT_LOOP": loop,
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT": "64",
        "WEBHOOKS_METRICS_LISTEN": "",
        "WEBHOOKS_GRPC_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_LOG_LEVEL": "INFO",
        "WEBHOOKS_LOG_FORMAT": "text",
        "WEBHOOKS_SHUTDOWN_GRACE": "1",
        "WEBHOOKS_PUBLISH_RATE_LIMIT_PER_SECOND": "0",
    }
    ready = "serving gRPC on " if command == "serve" else "delivery worker running"
    with open(log, "wb") as out:
        proc = subprocess.Popen([WEBHOOKS, command], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if ready in line:
                base = cpu_seconds(proc.pid)
                target = line.rsplit(" ", 1)[1].strip() if command == "serve" else ""
                if f"on the {loop} event loop" not in log.read_text():
                    raise SystemExit(f"{command} did not log the {loop} loop:\n{log.read_text()}")
                return proc, base, target
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.kill()
    raise SystemExit(f"{command} did not start:\n{log.read_text()}")


def wait_drained(engine: Engine, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while attempts(engine) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the child exited or did not drain in time")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    if code != 0:
        raise SystemExit(f"child exited {code}")


def worker_round(
    engine: Engine, settings: Settings, url: str, org: str, n: int, loop: str, log: Path
) -> tuple[float, float]:
    clear(engine)

    async def backlog() -> None:
        for offset in range(0, n, publishing.MAX_BATCH):
            items = [
                publishing.EventInput(org, "", "reward.claimed", None, claim(0, PAD))
                for _ in range(min(publishing.MAX_BATCH, n - offset))
            ]
            await publishing.publish_events(engine, settings, org, items, batch=True)

    asyncio.run(backlog())
    proc, base, _ = start("worker", url, loop, log)
    began = time.perf_counter()
    wait_drained(engine, n, proc)
    used = cpu_seconds(proc.pid) - base
    wall = time.perf_counter() - began
    stop(proc)
    return used, wall


def serve_round(
    engine: Engine, url: str, org: str, key: str, n: int, loop: str, log: Path
) -> tuple[float, float]:
    clear(engine)
    proc, base, target = start("serve", url, loop, log)
    began = time.perf_counter()
    with PublisherClient(target, key) as pub:
        for offset in range(0, n, 100):
            pub.publish_events(
                [
                    make_publish_request(org, "reward.claimed", claim(i, PAD))
                    for i in range(offset, min(offset + 100, n))
                ]
            )
    wait_drained(engine, n, proc)
    used = cpu_seconds(proc.pid) - base
    wall = time.perf_counter() - began
    stop(proc)
    return used, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per loop, alternating")
    parser.add_argument("--modes", default="worker,serve")
    parser.add_argument("--backend", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "WEBHOOKS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    receiver = ctx.Process(target=receiver_main, args=(child,), daemon=True)
    receiver.start()
    fast, _ = parent.recv()
    rx = Rx(parent)
    with tempfile.TemporaryDirectory() as tmp:
        url, engine = fresh_database(args.backend, args.postgres_url, tmp)
        settings = Settings(database_url=url, allowed_target_networks=("127.0.0.0/8",))
        try:
            org = orgs.create_org(engine, "bench").id
            _, key = keys.create_key(engine, org, (keys.SCOPE_EVENTS_PUBLISH,))
            add_config(engine, settings, org, f"http://127.0.0.1:{fast}/hook")
            for mode in args.modes.split(","):
                per: dict[str, list[float]] = {loop: [] for loop in LOOPS}
                rates: dict[str, list[float]] = {loop: [] for loop in LOOPS}
                for r in range(args.rounds):
                    order = LOOPS if r % 2 == 0 else LOOPS[::-1]
                    for loop in order:
                        log = Path(tmp) / f"{mode}-{loop}-{r}.log"
                        rx.ask("reset")
                        if mode == "worker":
                            used, wall = worker_round(
                                engine, settings, url, org, args.events, loop, log
                            )
                        else:
                            used, wall = serve_round(engine, url, org, key, args.events, loop, log)
                        per[loop].append(used / args.events * 1000)
                        rates[loop].append(args.events / wall)
                        print(
                            f"{mode} round {r + 1} {loop:>7}: {used:.2f} s CPU for "
                            f"{args.events} deliveries = {per[loop][-1]:.3f} ms each, "
                            f"{rates[loop][-1]:,.0f}/s wall; receiver got {rx.ask('count')}",
                            flush=True,
                        )
                a, u = statistics.median(per["asyncio"]), statistics.median(per["uvloop"])
                print(
                    f"== {mode} on {args.backend}, median of {args.rounds}: asyncio {a:.3f} ms, "
                    f"uvloop {u:.3f} ms CPU per delivery ({(u - a) / a:+.1%}); deliveries/s "
                    f"asyncio {statistics.median(rates['asyncio']):,.0f}, "
                    f"uvloop {statistics.median(rates['uvloop']):,.0f}",
                    flush=True,
                )
        finally:
            engine.dispose()
            drop_database(url, args.postgres_url)
    rx.ask("stop")
    receiver.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

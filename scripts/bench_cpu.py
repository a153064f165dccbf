"""CPU benchmark (``make bench-cpu``, part of ``make bench``): CPU per delivery.

Issue 15: the CPU seconds the whole service spends per 1,000 deliveries,
against a raw aiohttp loop posting the same signed 1 KiB bodies to the same
receiver, and what extra ``webhooks worker`` processes add on PostgreSQL.

Method. One fast receiver subprocess (``bench_delivery.receiver_main``)
answers every POST with 200; nothing else runs on it, and its CPU is counted
for no side. Each round (default 3; every figure printed is the median over
the rounds, and the ratios are taken within a round, so that load drifting on
this shared 2-core machine weighs on both sides alike) runs, in this order:

1. **raw**: ``bench_delivery.raw_loop`` in its own subprocess: sign with
   ``webhook_headers`` and POST ``reward.claimed`` bodies with aiohttp at
   concurrency 64, on asyncio and (when ``uvloop`` is importable) on uvloop.
   CPU = the subprocess's own user+sys (``getrusage(RUSAGE_SELF)``) around
   the loop; deliveries/s over the same span. Then, for each backend, the
   **durable raw loop** (issue 25): the same loop on asyncio, plus one
   minimal attempt row per delivery (id, event id, status, time) into a
   scratch table of a scratch database (a SQLite file through the service's
   ``db.create_engine``, a PostgreSQL database created and dropped), batched
   as the service's recorder batches (``FLUSH_ROWS`` / ``FLUSH_DELAY_SECONDS``,
   one ``executemany`` transaction per batch in a thread); on PostgreSQL the
   server's CPU over the loop counts as it counts for serve (``Meter``).
2. **serve** on SQLite and on PostgreSQL: a real ``webhooks serve``
   subprocess (settings through WEBHOOKS_* variables: gRPC on an ephemeral
   port, metrics on a free one of 56400-56499, 256 in flight, 64 per
   endpoint, log level WARNING, a WEBHOOKS_SECRET_KEY) on a fresh database
   (a SQLite file in a temporary directory; a PostgreSQL database created
   for the run and dropped after),
   seeded first with one organisation, one configuration (event types ``*``,
   the receiver's URL) and an ``events:publish`` key through the core
   functions. Once it says it serves, a publisher subprocess (playing the
   internal service; its CPU is not counted) connects over gRPC with
   ``webhooks_client.PublisherClient`` and, on a signal, publishes N events
   (default 5,000) in PublishEvents batches of 500, four batches in flight
   (threads). The window runs from that signal until the receiver has all N
   deliveries and the database all N attempts (polled every 20 ms: the newest
   ``delivery_attempts`` id, then one exact count). Service CPU = user+sys of
   the service processes over the window (``/proc/<pid>/stat``, all threads),
   plus on PostgreSQL every PostgreSQL server process on the machine (a scan
   of ``/proc`` at the start, every 0.25 s and at the end; a backend that
   exits counts with its last sample, a new one from 0; the backends of
   other databases, i.e. anyone else's load, are printed apart and left out
   with ``--pg-this-database-only``). Printed: deliveries/s, CPU s per 1,000
   deliveries, and against the same round's raw asyncio loop the **CPU
   ratio** (service CPU per delivery / raw CPU per delivery; target <= 2.0 on
   SQLite), the **throughput ratio** (target >= 0.6) and against the same
   round's durable raw loop on the same database the **CPU vs durable** ratio
   (target <= 1.5 on PostgreSQL, which replaces its ratio to the raw loop).
3. **scale-out** on PostgreSQL: ``webhooks serve`` + N ``webhooks worker``
   processes (``--workers 0,1,2``; N = 0 is the serve run of step 2 when that
   ran with the same settings), the same window and CPU (every service process
   + PostgreSQL), and the deliveries/s each added process adds. Then **per
   process**: each one's metrics port (a fixed free port of 56400-56499, as
   the bound port of ``:0`` is only logged at INFO) is scraped at the window's
   start and end for ``webhooks_delivery_attempts_total{outcome="delivered"}``,
   and its CPU is its own share of the service CPU above: its deliveries,
   deliveries/s, cores (CPU s / window s) and **deliveries per CPU-second**,
   with the machine's idle cores over the window (``/proc/stat``) and the
   cores of the receiver, the publisher and this process. Deliveries per
   CPU-second staying roughly constant (within +-25 %) as N grows is what
   "each process adds deliveries/s in proportion to the cores it gets"
   means; with no idle core left a process more only moves cores between
   processes, and the totals stay put. ``--serve-in-flight K`` gives serve a
   smaller ``WEBHOOKS_MAX_IN_FLIGHT`` (workers keep 256) so that less of each
   burst is handed to serve's own worker. No target: the table says what 2
   cores allow.

``--baseline-tree DIR`` (another checkout with its own ``.venv``, e.g. a
worktree of ``main``): each round runs that checkout's ``webhooks serve`` too,
beside this one's on each backend (alternating which goes first), on a
database migrated by its own migrations; the table adds its rows and this
checkout's CPU and rate against it, round by round, and checks CPU per
delivery <= 0.75x it (issue 25: "against the service at this issue's starting
commit, in the same rounds": ``git worktree add --detach /tmp/start 4c2af50 &&
make -C /tmp/start venv``, then ``--baseline-tree /tmp/start``).

Also printed once: the start-up CPU of ``webhooks serve`` (user+sys from exec
until it prints that it serves, median over every start of the run) and how
much of ``.venv`` has compiled bytecode (with PYTHONDONTWRITEBYTECODE set, as
here, Python never writes it, so without ``UV_COMPILE_BYTECODE=1`` at
``uv sync`` every start compiles every module again).

Exit status 1 if a target is missed or a run lost a delivery or an attempt.
Not a test: figures depend on the machine. Run: ``make bench-cpu
CPU_ARGS="--events 3000 --rounds 2"`` or ``.venv/bin/python scripts/bench_cpu.py
[--events N] [--rounds R] [--backends sqlite,postgres] [--workers 0,1,2]
[--phases raw,serve,scaleout] [--serve-in-flight K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_delivery import (
    CONCURRENCY,
    PAD,
    RawAttempt,
    Rx,
    add_config,
    claim,
    count_attempts,
    drop_database,
    fresh_database,
    newest_attempt_id,
    raw_loop,
    receiver_main,
)
from sqlalchemy.engine import make_url

from webhooks_service.config import Settings
from webhooks_service.core import keys, orgs
from webhooks_service.storage import db

PHASES = ("raw", "serve", "scaleout")
BATCH = 500  # PublishEvents' maximum
PUBLISH_THREADS = 4  # batches in flight at once
MAX_IN_FLIGHT = 256
PER_ENDPOINT = 64
CPU_RATIO_TARGET = 2.0
DURABLE_RATIO_TARGET = 1.5  # issue 25: serve on PostgreSQL vs the durable raw loop
DURABLE_TABLE = "bench_raw_attempts"  # the durable raw loop's scratch table
THROUGHPUT_RATIO_TARGET = 0.6
# issue 25: serve's CPU per delivery vs the service at the starting commit
# (4c2af50), run with --baseline-tree in the same rounds
BASELINE_RATIO_TARGET = 0.75
WINDOW_TIMEOUT = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVING = "webhooks: serving gRPC on "
WORKING = "webhooks: delivery worker running"
# Fixed metrics ports for the service processes (they are scraped at the window's
# start and end; with WEBHOOKS_METRICS_LISTEN=...:0 the bound port is only logged
# at INFO, and the bench runs at WARNING).
METRICS_PORTS = range(56400, 56500)
ATTEMPTS = re.compile(r'^webhooks_delivery_attempts_total\{outcome="(\w+)"\} (\S+)$', re.M)
STEADY_SPREAD = 0.25  # deliveries per CPU-second "roughly constant": within +-25 % of the median
BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?(\S+) (\S+) (?:\S+\(\d+\)|\[local\])")


# -- CPU of processes ------------------------------------------------------------------


def proc_cpu(pid: int) -> tuple[int, float] | None:
    """(start time in ticks, user+sys seconds of all its threads) or None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()  # fields from 3 (state) on
    return int(rest[19]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def postgres_pids() -> dict[int, str]:
    """Every PostgreSQL server process on the machine: pid -> its title."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if Path(entry.path, "comm").read_bytes().strip() != b"postgres":
                continue
            title = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        found[int(entry.name)] = title.decode(errors="replace")
    return found


def machine_ticks() -> tuple[int, int]:
    """(idle + iowait ticks, all ticks) of every core together, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest, guest_nice are inside user/nice)
    return fields[3] + fields[4], sum(fields[:8])


def free_metrics_port(taken: set[int]) -> int:
    """A port of METRICS_PORTS nobody listens on (bound as the metrics server binds)."""
    for port in METRICS_PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free metrics port in {METRICS_PORTS.start}-{METRICS_PORTS.stop - 1}")


def scrape_attempts(port: int) -> dict[str, float]:
    """``webhooks_delivery_attempts_total`` by outcome from one process's /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {outcome: float(value) for outcome, value in ATTEMPTS.findall(text)}


@dataclass
class _Sample:
    first: float
    last: float
    database: str  # "" for the postmaster and its auxiliary processes


@dataclass
class Cpu:
    service: float  # the webhooks processes
    postgres: float  # PostgreSQL processes counted
    foreign: float  # backends of other databases (counted unless this_database_only)
    per_process: list[float] = field(default_factory=list)  # service CPU, in ``pids`` order
    idle_cores: float = float("nan")  # the machine's idle CPU over the window (/proc/stat)
    others: dict[str, float] = field(default_factory=dict)  # receiver, publisher, this process

    @property
    def total(self) -> float:
        return self.service + self.postgres


class Meter:
    """User+sys CPU over a window: the given pids, and PostgreSQL's processes."""

    def __init__(
        self,
        pids: list[int],
        database: str | None,
        this_database_only: bool,
        others: dict[str, int] | None = None,
    ) -> None:
        self.pids = pids
        self.others = others or {}  # name -> pid, measured apart and counted for no side
        self.start_others: dict[str, float] = {}
        self.database = database  # None: not on PostgreSQL
        self.this_database_only = this_database_only
        self.start_service: dict[int, float] = {}
        self.start_stat: tuple[int, int] = (0, 0)
        self.started = 0.0
        self.pg: dict[tuple[int, int], _Sample] = {}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def _scan(self, first: bool) -> None:
        for pid, title in postgres_pids().items():
            got = proc_cpu(pid)
            if got is None:
                continue
            start, cpu = got
            sample = self.pg.get((pid, start))
            if sample is None:
                match = BACKEND_TITLE.match(title)
                self.pg[(pid, start)] = _Sample(
                    cpu if first else 0.0, cpu, match[2] if match else ""
                )
            else:
                sample.last = cpu

    def _poll(self) -> None:
        while not self.stop_event.wait(0.25):
            self._scan(first=False)

    def start(self) -> None:
        self.start_stat = machine_ticks()
        self.started = time.perf_counter()
        for name, pid in self.others.items():
            got = proc_cpu(pid)
            self.start_others[name] = got[1] if got else 0.0
        for pid in self.pids:
            got = proc_cpu(pid)
            self.start_service[pid] = got[1] if got else 0.0
        if self.database is not None:
            self._scan(first=True)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()

    def stop(self) -> Cpu:
        idle, total = machine_ticks()
        seconds = time.perf_counter() - self.started
        idle_share = (idle - self.start_stat[0]) / max(1, total - self.start_stat[1])
        # idle share of all ticks x the cores = idle cores (every core ticks alike)
        idle_cores = idle_share * (os.cpu_count() or 1) if seconds > 0 else float("nan")
        per_process: list[float] = []
        for pid in self.pids:
            got = proc_cpu(pid)
            if got is None:
                raise RuntimeError(f"service process {pid} exited during the window")
            per_process.append(got[1] - self.start_service[pid])
        service = sum(per_process)
        others: dict[str, float] = {}
        for name, pid in self.others.items():
            got = proc_cpu(pid)
            if got is not None:
                others[name] = got[1] - self.start_others[name]
        postgres = foreign = 0.0
        if self.database is not None:
            self._scan(first=False)
            self.stop_event.set()
            assert self.thread is not None
            self.thread.join()
            for s in self.pg.values():
                used = s.last - s.first
                if s.database and s.database != self.database:
                    foreign += used
                    if self.this_database_only:
                        continue
                postgres += used
        return Cpu(service, postgres, foreign, per_process, idle_cores, others)


# -- subprocesses -----------------------------------------------------------------------

_LIVE: list[subprocess.Popen[str]] = []


def _kill_live() -> None:
    for proc in _LIVE:
        if proc.poll() is None:
            proc.kill()


atexit.register(_kill_live)


class Service:
    """One ``webhooks serve`` / ``webhooks worker`` subprocess."""

    def __init__(
        self, command: str, env: dict[str, str], metrics_port: int, tree: str = ""
    ) -> None:
        exe = Path(tree, ".venv", "bin", "webhooks") if tree else None
        if exe is None:
            exe = Path(sys.executable).with_name("webhooks")
        program = str(exe) if exe.exists() else (shutil.which("webhooks") or "webhooks")
        self.command = command
        self.marker = SERVING if command == "serve" else WORKING
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.startup_cpu = 0.0
        self.target = ""
        self.metrics_port = metrics_port
        self.proc = subprocess.Popen(
            [program, command],
            env={**env, "WEBHOOKS_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _LIVE.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def delivered(self) -> float:
        return scrape_attempts(self.metrics_port).get("delivered", 0.0)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not self.ready.is_set() and self.marker in line:
                got = proc_cpu(self.proc.pid)
                self.startup_cpu = got[1] if got else 0.0
                if self.command == "serve":
                    self.target = line.split(SERVING, 1)[1].strip()
                self.ready.set()
            else:
                self.lines.append(line)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "".join(self.lines[-15:])
                raise RuntimeError(f"`webhooks {self.command}` did not start:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ValueError):
            _LIVE.remove(self.proc)


def service_env(url: str, secret_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WEBHOOKS_DATABASE_URL=url,
        WEBHOOKS_GRPC_LISTEN="127.0.0.1:0",
        WEBHOOKS_ALLOWED_TARGET_NETWORKS="127.0.0.0/8",
        WEBHOOKS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
        WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT=str(PER_ENDPOINT),
        WEBHOOKS_LOG_LEVEL="WARNING",
        WEBHOOKS_SHUTDOWN_GRACE="1",
        WEBHOOKS_SECRET_KEY=secret_key,
    )
    return env


def publisher_main(conn: Connection, target: str, key: str, org: str, n: int) -> None:
    """Publish ``n`` events over gRPC when told to; send back (accepted, seconds)."""
    import grpc

    from webhooks_client import PublisherClient, make_publish_request

    data = claim(0, PAD)
    requests = [make_publish_request(org, "reward.claimed", data, id=f"cpu_{i}") for i in range(n)]
    batches = [requests[i : i + BATCH] for i in range(0, n, BATCH)]
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)
    try:
        with PublisherClient(target, key, channel=channel) as client:
            conn.send("ready")
            conn.recv()
            started = time.perf_counter()
            with ThreadPoolExecutor(PUBLISH_THREADS) as pool:
                accepted = sum(
                    pool.map(lambda b: len(client.publish_events(b, timeout=120)), batches)
                )
            conn.send((accepted, time.perf_counter() - started))
    finally:
        channel.close()


def durable_table(engine: sa.Engine) -> Callable[[list[RawAttempt]], None]:
    """Create the durable raw loop's scratch table; return its batch insert."""
    sqlite = engine.dialect.name == "sqlite"
    pk = "INTEGER PRIMARY KEY" if sqlite else "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {DURABLE_TABLE} (id {pk}, event_id text NOT NULL, "
            f"status integer NOT NULL, attempted_at {'text' if sqlite else 'timestamptz'} NOT NULL)"
        )
    marks = ", ".join(["?" if sqlite else "%s"] * 3)
    insert = f"INSERT INTO {DURABLE_TABLE} (event_id, status, attempted_at) VALUES ({marks})"

    def record(rows: list[RawAttempt]) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, rows)

    return record


def raw_main(conn: Connection, port: int, n: int, loop: str, url: str) -> None:
    """bench_delivery's raw aiohttp loop, durable with a database ``url`` (one minimal
    attempt row per delivery, in batches, into a scratch table there). Starts on "go";
    sends back (deliveries/s, CPU seconds, rows written)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        factory = importlib.import_module("uvloop").new_event_loop
    engine = db.create_engine(url) if url else None
    record = durable_table(engine) if engine is not None else None
    conn.send("ready")
    conn.recv()
    with asyncio.Runner(loop_factory=factory) as runner:
        before = resource.getrusage(resource.RUSAGE_SELF)
        rate = runner.run(raw_loop(port, n, record))
        after = resource.getrusage(resource.RUSAGE_SELF)
    rows = n
    if engine is not None:
        with engine.begin() as c:
            rows = c.exec_driver_sql(f"SELECT count(*) FROM {DURABLE_TABLE}").scalar_one()
            c.exec_driver_sql(f"DROP TABLE {DURABLE_TABLE}")
        engine.dispose()
    conn.send((rate, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, rows))


# -- runs ---------------------------------------------------------------------------------


@dataclass
class Share:
    """One service process's part of a window."""

    name: str  # "serve", "worker 1", ...
    delivered: float  # its delivered attempts (its metrics, end minus start)
    cpu: float  # its user+sys seconds

    def per_cpu_second(self) -> float:
        return self.delivered / self.cpu if self.cpu > 0 else float("nan")


@dataclass
class Run:
    rate: float  # deliveries/s
    cpu: Cpu
    n: int
    seconds: float = 0.0  # the window
    shares: list[Share] = field(default_factory=list)  # per service process
    publish_seconds: float = 0.0
    startup: list[float] = field(default_factory=list)  # serve's start-up CPU
    problems: list[str] = field(default_factory=list)

    @property
    def per_1000(self) -> float:
        return self.cpu.total / self.n * 1000


def raw_run(
    rx: Rx,
    port: int,
    n: int,
    loop: str,
    url: str = "",
    database: str | None = None,
    this_database_only: bool = False,
) -> Run:
    """The raw loop; durable with ``url``, and with ``database`` (PostgreSQL) the
    server's CPU counted as for serve (``Meter``)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=raw_main, args=(child, port, n, loop, url), daemon=True)
    proc.start()
    try:
        if parent.recv() != "ready":
            raise RuntimeError("the raw loop did not start")
        rx.ask("reset")
        meter = Meter([], database, this_database_only)
        meter.start()
        parent.send("go")
        rate, cpu, rows = parent.recv()
        server = meter.stop()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    received = rx.ask("count")
    run = Run(rate, Cpu(cpu, server.postgres, server.foreign), n)
    name = f"durable raw {make_url(url).get_backend_name()}" if url else f"raw {loop}"
    if received != n or rows != n:
        run.problems.append(f"{name}: receiver got {received}, {rows} rows of {n}")
    return run


def durable_run(backend: str, args: argparse.Namespace, rx: Rx, port: int, tmp: str) -> Run:
    """The durable raw loop on asyncio (the loop the ratios are taken against) into a
    scratch database of ``backend``, dropped after."""
    url, engine = fresh_database(backend, args.postgres_url, tmp, migrate=False)
    engine.dispose()
    try:
        database = make_url(url).database if backend == "postgres" else None
        return raw_run(rx, port, args.events, "asyncio", url, database, args.pg_this_database_only)
    finally:
        drop_database(url, args.postgres_url)


# Run by another checkout's Python (``--baseline-tree``): migrate with its own
# migrations, then an organisation, one configuration on "*" and a publish key
# through its own use cases (the arguments every version since issue 15 takes).
_TREE_SETUP = """
import json, sys
from webhooks_service.config import Settings
from webhooks_service.core import configs, keys, orgs
from webhooks_service.storage import db
url, secret_key, target = sys.argv[1:4]
engine = db.create_engine(url)
db.upgrade(engine)
settings = Settings(
    database_url=url, allowed_target_networks=("127.0.0.0/8",), secret_key=secret_key
)
org = orgs.create_org(engine, "bench-cpu").id
configs.put_config(
    engine, settings, org, config_id="", url=target, event_types=["*"], secret=None,
    enabled=None, description="bench",
)
print(json.dumps([org, keys.create_key(engine, org, ["events:publish"])[1]]))
"""


def tree_setup(tree: str, url: str, secret_key: str, target: str) -> tuple[str, str]:
    """(organisation id, publish key) in a database that ``tree`` migrated itself."""
    done = subprocess.run(
        [str(Path(tree, ".venv", "bin", "python")), "-c", _TREE_SETUP, url, secret_key, target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"setting up a database with {tree} failed:\n{done.stderr[-2000:]}")
    org, key = json.loads(done.stdout.strip().splitlines()[-1])
    return str(org), str(key)


def service_run(
    backend: str,
    workers: int,
    args: argparse.Namespace,
    rx: Rx,
    port: int,
    tmp: str,
    serve_in_flight: int = MAX_IN_FLIGHT,
    receiver_pid: int = 0,
    tree: str = "",
) -> Run:
    """One window of serve (+ ``workers``); with ``tree``, the service of that
    checkout (its ``.venv``), on a database migrated by its own migrations."""
    n = args.events
    url, engine = fresh_database(backend, args.postgres_url, tmp, migrate=not tree)
    secret_key = secrets.token_urlsafe(32)
    procs: list[Service] = []
    publisher: Any = None
    try:
        if tree:  # that checkout's own schema and code set the database up
            org, key = tree_setup(tree, url, secret_key, f"http://127.0.0.1:{port}/")
        else:
            settings = Settings(
                database_url=url, allowed_target_networks=("127.0.0.0/8",), secret_key=secret_key
            )
            org = orgs.create_org(engine, "bench-cpu").id
            add_config(engine, settings, org, f"http://127.0.0.1:{port}/")
            key = keys.create_key(engine, org, ["events:publish"])[1]
        env = service_env(url, secret_key)
        ports: set[int] = set()
        serve_env = {**env, "WEBHOOKS_MAX_IN_FLIGHT": str(serve_in_flight)}
        serve = Service("serve", serve_env, free_metrics_port(ports), tree)
        procs.append(serve)
        serve.wait_ready()
        procs.extend(Service("worker", env, free_metrics_port(ports), tree) for _ in range(workers))
        for proc in procs[1:]:
            proc.wait_ready()
        time.sleep(1.0)  # let them settle (workers LISTEN, first idle polls)

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        publisher = ctx.Process(
            target=publisher_main, args=(child, serve.target, key, org, n), daemon=True
        )
        publisher.start()
        if not parent.poll(60) or parent.recv() != "ready":
            raise RuntimeError("the publisher did not connect")
        rx.ask("reset")
        before = newest_attempt_id(engine)
        database = make_url(url).database if backend == "postgres" else None
        others = {"receiver": receiver_pid, "publisher": publisher.pid, "bench": os.getpid()}
        meter = Meter(
            [p.pid for p in procs],
            database,
            args.pg_this_database_only,
            {k: v for k, v in others.items() if v},
        )
        delivered_before = [p.delivered() for p in procs]
        meter.start()
        started = time.perf_counter()
        parent.send("go")
        received = 0
        while True:
            time.sleep(0.02)
            received = rx.ask("count")
            # the newest id is one index lookup; count exactly only once it says done
            if (
                received >= n
                and newest_attempt_id(engine) - before >= n
                and count_attempts(engine, after_id=before) >= n
            ):
                break
            if time.perf_counter() - started > WINDOW_TIMEOUT:
                raise RuntimeError(
                    f"{backend}: only {received}/{n} received, "
                    f"{count_attempts(engine, after_id=before)} attempts after {WINDOW_TIMEOUT} s"
                )
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        # the counters move just after each batch is written: wait for the last one
        deadline = time.monotonic() + 5.0
        while True:
            delivered = [p.delivered() - b for p, b in zip(procs, delivered_before, strict=True)]
            if sum(delivered) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        shares = [
            Share("serve" if i == 0 else f"worker {i}", d, c)
            for i, (d, c) in enumerate(zip(delivered, cpu.per_process, strict=True))
        ]
        accepted, publish_seconds = parent.recv()
        run = Run(n / elapsed, cpu, n, elapsed, shares, publish_seconds, [serve.startup_cpu])
        if sum(delivered) != n:
            run.problems.append(
                f"{backend} + {workers} workers: the processes' metrics count "
                f"{sum(delivered):,.0f} deliveries of {n}"
            )
        logged = count_attempts(engine, after_id=before)
        if accepted != n or logged != n or received != n:
            run.problems.append(
                f"{backend} + {workers} workers: published {accepted}, attempts {logged}, "
                f"received {received} of {n}"
            )
        return run
    finally:
        for proc in procs:
            proc.stop()
        if publisher is not None:
            publisher.join(5)
            if publisher.is_alive():
                publisher.kill()
        engine.dispose()
        drop_database(url, args.postgres_url)


# -- report -------------------------------------------------------------------------------


def postgres_reachable(url: str) -> str:
    """ "" if PostgreSQL answers at ``url``, else why not."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return ""
    except Exception as exc:
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def bytecode_share() -> tuple[int, int]:
    """(.py files under the venv's site-packages with a compiled .pyc, all .py files)."""
    tag = sys.implementation.cache_tag
    have = total = 0
    for root in {p for p in sys.path if p.endswith("site-packages")}:
        for folder, _, files in os.walk(root):
            cached: set[str] = set()
            with contextlib.suppress(OSError):
                cached = set(os.listdir(os.path.join(folder, "__pycache__")))
            for name in files:
                if name.endswith(".py"):
                    total += 1
                    have += f"{name[:-3]}.{tag}.pyc" in cached
    return have, total


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def scale_report(scale: dict[int, list[Run]], serve_in_flight: int) -> None:
    """Scale-out: per N the totals, then each process's deliveries and cores."""
    cores = os.cpu_count() or 1
    print(
        f"\n== scale-out on PostgreSQL: serve + N workers ({cores} cores; serve "
        f"{serve_in_flight} in flight, workers {MAX_IN_FLIGHT}; CPU: every service process + PG) =="
    )
    print(
        f"{'N':>2} {'processes':>9} {'deliv/s':>8} {'CPU s/1000':>11} {'of it PG':>9} "
        f"{'+deliv/s vs N-1':>16} {'rounds (deliv/s)':>17}"
    )
    previous: float | None = None
    for w, runs in scale.items():
        rate = med([r.rate for r in runs])
        added = "" if previous is None else f"{rate - previous:+,.0f}"
        print(
            f"{w:>2} {w + 1:>9} {rate:8,.0f} {med([r.per_1000 for r in runs]):11.3f} "
            f"{med([r.cpu.postgres / r.n * 1000 for r in runs]):9.3f} {added:>16}   "
            + " ".join(f"{r.rate:,.0f}" for r in runs)
        )
        previous = rate
    counts = list(scale)
    if len(scale) > 1:
        extra = counts[-1] - counts[0]
        gain = med([r.rate for r in scale[counts[-1]]]) - med([r.rate for r in scale[counts[0]]])
        print(
            f"each added process adds {gain / extra:+,.0f} deliveries/s on average "
            f"(totals; with no idle core a process more mostly takes cores from the others)"
        )

    print(
        "\n  per process over the window (medians over the rounds; cores = its CPU s / window s;"
        " deliv/CPU-s = its deliveries / its CPU s):"
    )
    print(
        f"  {'N':>2} {'process':10} {'deliveries':>10} {'deliv/s':>8} {'cores':>6} "
        f"{'deliv/CPU-s':>12}"
    )
    workers_eff: list[float] = []
    whole_eff: list[float] = []
    for w, runs in scale.items():
        usable = [r for r in runs if len(r.shares) == w + 1]
        if not usable:
            continue
        for i in range(w + 1):
            shares = [r.shares[i] for r in usable]
            pairs = list(zip(shares, usable, strict=True))
            eff = med([s.per_cpu_second() for s in shares])
            if i:
                workers_eff.append(eff)
            print(
                f"  {w:>2} {shares[0].name:10} {med([s.delivered for s in shares]):10,.0f} "
                f"{med([s.delivered / r.seconds for s, r in pairs]):8,.0f} "
                f"{med([s.cpu / r.seconds for s, r in pairs]):6.2f} "
                f"{eff:12,.0f}"
            )
        eff = med([r.n / r.cpu.service for r in usable])
        whole_eff.append(eff)
        print(
            f"  {w:>2} {'all':10} {med([float(r.n) for r in usable]):10,.0f} "
            f"{med([r.rate for r in usable]):8,.0f} "
            f"{med([r.cpu.service / r.seconds for r in usable]):6.2f} {eff:12,.0f}"
            f"   + PostgreSQL {med([r.cpu.postgres / r.seconds for r in usable]):.2f} cores "
            f"({med([r.cpu.postgres / r.n * 1000 for r in usable]):.2f} ms CPU per delivery); "
            f"machine idle {med([r.cpu.idle_cores for r in usable]):.2f} of {cores} cores"
        )
        rest = [
            f"{name} {med([r.cpu.others.get(name, 0.0) / r.seconds for r in usable]):.2f}"
            for name in usable[0].cpu.others
        ]
        unaccounted = med(
            [
                cores
                - r.cpu.idle_cores
                - (r.cpu.service + r.cpu.postgres + sum(r.cpu.others.values())) / r.seconds
                for r in usable
            ]
        )
        rest.append(f"anything else (kernel, other users) {unaccounted:.2f}")
        print(f"  {'':2} {'':10} the rest of the machine, cores: " + ", ".join(rest))

    def steady(values: list[float]) -> str:
        mid = med(values)
        lo, hi = min(values), max(values)
        within = lo >= mid * (1 - STEADY_SPREAD) and hi <= mid * (1 + STEADY_SPREAD)
        verdict = "roughly constant: all" if within else "NOT constant: not all"
        return f"{lo:,.0f} to {hi:,.0f} ({verdict} within +-{STEADY_SPREAD:.0%} of {mid:,.0f})"

    if len(whole_eff) > 1:
        print(f"  deliveries per service CPU-second as N grows: {steady(whole_eff)}")
    if workers_eff:
        print(f"  each worker process's deliveries per CPU-second: {steady(workers_eff)}")
    if len(whole_eff) > 1 or workers_eff:
        print(
            "  constant deliveries per CPU-second = each process adds deliveries/s in "
            "proportion to the cores it gets; the total grows only where idle cores are left"
        )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks: subprocesses stop, databases drop


def main(argv: list[str] | None = None) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000, help="events (deliveries) per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres", help="for the serve phase")
    parser.add_argument(
        "--workers", default="0,1,2", help="scale-out: worker processes next to serve"
    )
    parser.add_argument(
        "--serve-in-flight",
        type=int,
        default=MAX_IN_FLIGHT,
        help=(
            "scale-out: serve's WEBHOOKS_MAX_IN_FLIGHT (workers keep "
            f"{MAX_IN_FLIGHT}); smaller leaves more of each burst to the workers' claims"
        ),
    )
    parser.add_argument("--phases", default=",".join(PHASES), help="subset of " + ",".join(PHASES))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "WEBHOOKS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--pg-this-database-only",
        action="store_true",
        help="leave out PostgreSQL backends of other databases (someone else's load)",
    )
    parser.add_argument(
        "--baseline-tree",
        default="",
        help=(
            "another checkout with its own .venv (e.g. a worktree of main): its serve runs "
            "beside this one's, alternating, and the table adds this one's CPU against it"
        ),
    )
    args = parser.parse_args(argv)
    if args.baseline_tree and not Path(args.baseline_tree, ".venv", "bin", "webhooks").exists():
        parser.error(f"--baseline-tree: no .venv/bin/webhooks in {args.baseline_tree}")
    phases = set(args.phases.split(","))
    if not phases <= set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    backends = [b for b in args.backends.split(",") if b]
    if not set(backends) <= {"sqlite", "postgres"}:
        parser.error("--backends: sqlite and/or postgres")
    worker_counts = sorted({int(w) for w in args.workers.split(",") if w})
    if not phases & {"raw", "serve"}:
        backends = []
    scaleout = worker_counts if "scaleout" in phases else []
    if "postgres" in backends or scaleout:
        why = postgres_reachable(args.postgres_url)
        if why:
            print(f"PostgreSQL at {args.postgres_url} unreachable ({why}): skipping it")
            backends = [b for b in backends if b != "postgres"]
            scaleout = []
    durable_backends = backends if "raw" in phases else []
    if "serve" not in phases:
        backends = []
    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    if "raw" not in phases:
        loops = []

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    receiver = ctx.Process(target=receiver_main, args=(child,), daemon=True)
    receiver.start()
    port, _ = parent.recv()
    rx = Rx(parent)
    raw: dict[str, list[Run]] = {loop: [] for loop in loops}
    durable: dict[str, list[Run]] = {b: [] for b in durable_backends}
    serve: dict[str, list[Run]] = {b: [] for b in backends}
    based: dict[str, list[Run]] = {b: [] for b in backends} if args.baseline_tree else {}
    scale: dict[int, list[Run]] = {w: [] for w in scaleout}
    problems: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
                for loop in loops:
                    raw[loop].append(raw_run(rx, port, args.events, loop))
                for backend in durable_backends:
                    durable[backend].append(durable_run(backend, args, rx, port, tmp))
                for backend in backends:
                    # with a baseline tree, the two alternate (first one, then the other)
                    order = ["", args.baseline_tree] if args.baseline_tree else [""]
                    if round_ % 2:
                        order.reverse()
                    for tree in order:
                        (based if tree else serve)[backend].append(
                            service_run(
                                backend,
                                0,
                                args,
                                rx,
                                port,
                                tmp,
                                receiver_pid=receiver.pid or 0,
                                tree=tree,
                            )
                        )
                for w in scaleout:
                    if w == 0 and "postgres" in serve and args.serve_in_flight == MAX_IN_FLIGHT:
                        scale[0].append(serve["postgres"][-1])
                    else:
                        scale[w].append(
                            service_run(
                                "postgres",
                                w,
                                args,
                                rx,
                                port,
                                tmp,
                                args.serve_in_flight,
                                receiver.pid or 0,
                            )
                        )
    finally:
        with contextlib.suppress(Exception):
            rx.ask("stop")
        receiver.join(5)
        if receiver.is_alive():
            receiver.kill()

    every = [
        r
        for runs in (
            *raw.values(),
            *durable.values(),
            *serve.values(),
            *based.values(),
            *scale.values(),
        )
        for r in runs
    ]
    for r in every:
        problems.extend(r.problems)
    startup = [s for runs in (*serve.values(), *scale.values()) for r in runs for s in r.startup]

    checks: dict[str, bool] = {}
    print(
        f"\n== CPU per delivery: {args.rounds} rounds of {args.events:,} events "
        f"(1 KiB reward.claimed bodies, one local receiver); medians =="
    )
    print(
        f"raw loop: aiohttp, concurrency {CONCURRENCY}; service: {MAX_IN_FLIGHT} in flight, "
        f"{PER_ENDPOINT} per endpoint; published over gRPC in batches of {BATCH}, "
        f"{PUBLISH_THREADS} in flight (publisher not counted)"
    )
    print(
        "durable raw loop: the raw loop (asyncio) + one minimal attempt row per delivery, "
        "batched as the recorder batches, into a scratch table of the same database"
    )
    head = (
        f"{'':42} {'deliv/s':>8} {'CPU s/1000':>11} {'CPU ratio':>10} {'rate ratio':>11} "
        f"{'CPU vs durable':>15}"
    )
    print(head)
    base = raw.get("asyncio", [])

    def ratio(runs: list[Run], against: list[Run], of: Callable[[Run], float]) -> float:
        if len(against) != len(runs) or not runs:
            return float("nan")
        return med([of(r) / of(b) for r, b in zip(runs, against, strict=True)])

    def row(name: str, runs: list[Run], against: list[Run] | None = None) -> float:
        """Print one row; return its CPU ratio against the durable runs ``against``."""
        vs_durable = ratio(runs, against or [], lambda r: r.per_1000)
        print(
            f"{name:42} {med([r.rate for r in runs]):8,.0f} "
            f"{med([r.per_1000 for r in runs]):11.3f} "
            f"{ratio(runs, base, lambda r: r.per_1000):10.2f} "
            f"{ratio(runs, base, lambda r: r.rate):11.2f}"
            + (f" {vs_durable:15.2f}" if against else "")
        )
        return vs_durable

    for loop, runs in raw.items():
        row(f"raw aiohttp loop ({loop})", runs)
    if "raw" in phases and "uvloop" not in raw:
        print(f"{'raw aiohttp loop (uvloop)':42} skipped: uvloop is not importable")
    names = {"sqlite": "on SQLite", "postgres": "on PostgreSQL (+ its CPU)"}
    for backend, runs in durable.items():
        row(f"durable raw loop {names[backend]}", runs)
    for backend, runs in serve.items():
        vs_durable = row(f"serve {names[backend]}", runs, durable.get(backend))
        if base:
            cpu_ratio = ratio(runs, base, lambda r: r.per_1000)
            rate_ratio = ratio(runs, base, lambda r: r.rate)
            if backend == "postgres" and durable.get(backend):
                checks[f"{backend} CPU vs durable <= {DURABLE_RATIO_TARGET}"] = (
                    vs_durable <= DURABLE_RATIO_TARGET
                )
            else:
                checks[f"{backend} CPU ratio <= {CPU_RATIO_TARGET}"] = cpu_ratio <= CPU_RATIO_TARGET
            checks[f"{backend} rate ratio >= {THROUGHPUT_RATIO_TARGET}"] = (
                rate_ratio >= THROUGHPUT_RATIO_TARGET
            )
    for backend, runs in based.items():
        row(f"baseline tree: serve {names[backend]}", runs, durable.get(backend))
    for backend, runs in based.items():
        vs_baseline = ratio(serve[backend], runs, lambda r: r.per_1000)
        print(
            f"  serve {names[backend]} vs the baseline tree ({args.baseline_tree}): CPU "
            f"{vs_baseline:.2f}x, rate "
            f"{ratio(serve[backend], runs, lambda r: r.rate):.2f}x (same rounds)"
        )
        checks[f"{backend} CPU vs baseline tree <= {BASELINE_RATIO_TARGET}"] = (
            vs_baseline <= BASELINE_RATIO_TARGET
        )
    print("  rounds (deliv/s, CPU s/1000):")
    for name, runs in [
        *((f"raw {k}", v) for k, v in raw.items()),
        *((f"durable raw {k}", v) for k, v in durable.items()),
        *((f"serve {k}", v) for k, v in serve.items()),
        *((f"baseline {k}", v) for k, v in based.items()),
    ]:
        print(f"    {name:20} " + "  ".join(f"{r.rate:,.0f} {r.per_1000:.3f}" for r in runs))
    for label, part, runs in (
        ("durable raw loop", "loop", durable.get("postgres", [])),
        ("serve", "serve", serve.get("postgres", [])),
        ("baseline serve", "serve", based.get("postgres", [])),
    ):
        if runs:
            print(
                f"  {label} on PostgreSQL, CPU s/1000 split: {part} "
                f"{med([r.cpu.service / r.n * 1000 for r in runs]):.3f} + PostgreSQL "
                f"{med([r.cpu.postgres / r.n * 1000 for r in runs]):.3f}"
            )
    for backend, runs in serve.items():
        print(
            f"  serve on {backend}: publishing {args.events:,} events took "
            f"{med([r.publish_seconds for r in runs]):.2f} s of the window"
        )
    if scale:
        scale_report(scale, args.serve_in_flight)
    foreign = sum(r.cpu.foreign for r in every)
    if foreign > 0.05:
        how = "left out" if args.pg_this_database_only else "counted"
        print(
            f"note: PostgreSQL backends of other databases used {foreign:.2f} s CPU during the "
            f"windows ({how}; --pg-this-database-only leaves them out)"
        )
    if startup:
        have, total = bytecode_share()
        print(
            f"\nserve start-up CPU (exec until serving): median {med(startup):.2f} s over "
            f"{len(startup)} starts (min {min(startup):.2f}, max {max(startup):.2f}); "
            f"site-packages with compiled bytecode: {have:,} of {total:,} .py files"
            + (
                "; PYTHONDONTWRITEBYTECODE is set"
                if os.environ.get("PYTHONDONTWRITEBYTECODE")
                else ""
            )
        )
    checks["every delivery received and logged"] = not problems
    for problem in problems:
        print(f"problem: {problem}")
    if checks:
        print("checks: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in checks.items()))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

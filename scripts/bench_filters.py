"""Benchmark the CPU a payload filter adds to publishing (not a test; issue 21).

    .venv/bin/python scripts/bench_filters.py                  # SQLite and PostgreSQL
    .venv/bin/python scripts/bench_filters.py --backend sqlite --events 300

One database, three organisations with 100 enabled configurations each,
all subscribed to ``reward.claimed``:

- ``types only``: no filter (type matching alone, the baseline);
- ``filtered``: every configuration has its own filter
  (``event.data.points > i && event.data.community_id.startsWith("com_")``,
  i = 0..99) that accepts the published events, so both make the same 100
  deliveries per event and the difference is the filters' work;
- ``filtered, none pass``: the same filters with a threshold no event
  reaches (0 deliveries: what a selective filter saves).

Each round publishes ``--events`` events one at a time (``publishing.prepare``
then ``store_events``, the PublishEvent path below gRPC) to each organisation,
interleaved in chunks of 10 (A B C, C B A, …, so that the tables' growth and
SQLite's WAL checkpoints fall on every case alike), and reads this process's
CPU time (``time.process_time``) around each chunk; the figures are the
median over ``--rounds`` rounds of CPU per event, and the ratio to the
baseline of the same round. PostgreSQL's own CPU (another
process) is read from /proc too (the backends of the benchmark's database),
and both are reported: the publishing process alone, and the process plus
its PostgreSQL backends (the whole CPU of a publish; with SQLite the database
work is in the process already). Target: filtered / types only <= 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench_cpu import postgres_pids, proc_cpu
from bench_logs import fresh_database
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import configs, filters, orgs, publishing
from webhooks_service.storage import db
from webhooks_service.storage.models import utcnow

CONFIGS = 100
CASES = ("types only", "filtered", "filtered, none pass")


def _filter(case: str, i: int) -> str:
    if case == "types only":
        return ""
    threshold = i if case == "filtered" else 1_000_000 + i
    return f'event.data.points > {threshold} && event.data.community_id.startsWith("com_")'


def setup(engine: Engine, settings: Settings) -> dict[str, str]:
    """One organisation per case with CONFIGS configurations; case -> organisation id."""
    out: dict[str, str] = {}
    for case in CASES:
        org = orgs.create_org(engine, f"bench {case}").id
        for i in range(CONFIGS):
            configs.put_config(
                engine,
                settings,
                org,
                config_id="",
                url=f"https://example.com/{i}",
                event_types=["reward.claimed"],
                secret=None,
                enabled=True,
                description=None,
                filter_expression=_filter(case, i) or None,
            )
        out[case] = org
    return out


def backend_cpu(engine: Engine) -> float:
    """User+system seconds of the PostgreSQL backends serving ``engine``'s database (0: SQLite)."""
    if db.is_sqlite(engine):
        return 0.0
    name = engine.url.database or ""
    total = 0.0
    for pid, title in postgres_pids().items():
        if f" {name} " in f" {title} ":
            got = proc_cpu(pid)
            total += got[1] if got is not None else 0.0
    return total


def publish(engine: Engine, settings: Settings, org: str, n: int) -> tuple[float, float]:
    """(process CPU, process + database backends' CPU) seconds per event for ``n``
    single-event publishes."""
    data = {
        "user_id": "usr_8f2kq1",
        "reward_id": "rwd_71hx",
        "points": "250",
        "community_id": "com_runners",
        "claimed_at": "2026-11-27T10:15:00Z",
    }
    start, backends = time.process_time(), backend_cpu(engine)
    for _ in range(n):
        now = utcnow()
        item = publishing.EventInput(org, "", "reward.claimed", None, data)
        new, problems = publishing.prepare(item, caller_org=org, settings=settings, now=now)
        assert new is not None and not problems, problems
        [stored] = publishing.store_events(engine, [new], now=now, handoff=None)
        assert stored.deliveries in (0, CONFIGS)
    own = time.process_time() - start
    return own / n, (own + backend_cpu(engine) - backends) / n


def run(engine: Engine, label: str, events: int, rounds: int) -> float:
    settings = Settings(database_url=str(engine.url), max_configs_per_org=CONFIGS)
    by_case = setup(engine, settings)
    for case in CASES:  # warm-up: compile, caches, statement cache
        publish(engine, settings, by_case[case], 5)
    sqlite = db.is_sqlite(engine)
    measures = ("process",) if sqlite else ("process", "process + PostgreSQL backends")
    per_round: dict[tuple[str, int], list[float]] = {
        (case, m): [] for case in CASES for m in range(len(measures))
    }
    ratios: list[list[float]] = [[] for _ in measures]
    chunk = 10 if sqlite else 50  # /proc counts 10 ms ticks: longer chunks on PostgreSQL
    chunks = max(1, events // chunk)
    for _ in range(rounds):
        got = {(case, m): 0.0 for case in CASES for m in range(len(measures))}
        for k in range(chunks):
            for case in CASES if k % 2 == 0 else tuple(reversed(CASES)):
                cpu = publish(engine, settings, by_case[case], chunk)
                for m in range(len(measures)):
                    got[(case, m)] += cpu[m] / chunks
        for key, value in got.items():
            per_round[key].append(value)
        for m in range(len(measures)):
            ratios[m].append(got[("filtered", m)] / got[("types only", m)])
    print(f"\n{label}: {CONFIGS} configurations of one organisation, {events} events x {rounds}")
    worst = 0.0
    for m, measure in enumerate(measures):
        medians = {case: statistics.median(per_round[(case, m)]) for case in CASES}
        base = medians["types only"]
        print(f"  CPU per event, {measure}:")
        for case in CASES:
            print(f"    {case:<22} {medians[case] * 1e6:>7.0f} us {medians[case] / base:>6.2f}x")
        ratio = statistics.median(ratios[m])
        verdict = "ok" if ratio <= 1.2 else "OVER the 1.2x target"
        print(f"    filtered / types only (median of rounds): {ratio:.3f}x ({verdict})")
        worst = ratio  # the last measure is the whole publish
    skipped = sum(s for _, s, _ in filters.counts())
    print(f"  events skipped by filters in this process so far: {skipped}")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=150, help="events per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median reported)")
    args = parser.parse_args(argv)
    worst = 0.0
    for backend, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        if args.backend in (backend, "both"):
            with fresh_database(backend) as engine:
                worst = max(worst, run(engine, label, args.events, args.rounds))
    return 0 if worst <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the fault suite (tests/test_faults_*.py).

* :func:`worker_process`: ``webhooks worker`` as a child process (the thing
  that gets SIGKILLed, SIGTERMed, raced and measured), its log in a file so a
  chatty worker can never block on a full pipe;
* :func:`report`: every fault test states its figures (events sent,
  delivered, duplicated, lost, …) as one JSON line on stdout (``pytest -s``)
  and appended to ``$WEBHOOKS_FAULT_FIGURES`` when set; docs/reliability.md
  quotes them;
* database readers for the final state (statuses, attempts per event).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.server import make_org_and_keys
from tests.support.server import test_settings as make_settings
from webhooks_client import PublisherClient, make_publish_request
from webhooks_service.core import configs

WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")
FIGURES_ENV = "WEBHOOKS_FAULT_FIGURES"


def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


def report(fault: str, database_url: str, **figures: Any) -> dict[str, Any]:
    """Print (and append to $WEBHOOKS_FAULT_FIGURES) one line of figures."""
    line = {"fault": fault, "backend": backend(database_url), **figures}
    text = json.dumps(line, sort_keys=False)
    print(f"FAULT-FIGURES {text}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return line


# -- the worker process ----------------------------------------------------------------


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` memory figure (VmHWM: peak RSS, VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (``/proc/<pid>/stat``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@contextmanager
def worker_process(
    database_url: str, log_dir: Path, settings: Mapping[str, str] | None = None
) -> Iterator[WorkerProcess]:
    """``webhooks worker`` on ``database_url`` with WEBHOOKS_* ``settings``
    (names without the prefix, e.g. ``{"LEASE_SECONDS": "2"}``); killed on exit
    if still running."""
    env = {
        **os.environ,
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_POLL_INTERVAL": "0.1",
        "WEBHOOKS_LOG_LEVEL": "WARNING",
        "WEBHOOKS_METRICS_LISTEN": "",  # several workers at once: no fixed port
    }
    env.update({f"WEBHOOKS_{k}": v for k, v in (settings or {}).items()})
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [WEBHOOKS, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
    worker = WorkerProcess(proc, log_path)
    try:
        eventually(
            lambda: "delivery worker running" in worker.log() or proc.poll() is not None,
            30,
            "webhooks worker to start",
        )
        assert proc.poll() is None, f"webhooks worker exited: {worker.log()}"
        yield worker
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_listening(database_url: str, count: int, timeout: float = 30.0) -> None:
    """On PostgreSQL, until ``count`` sessions on this database have LISTENed (the
    worker's wake-up connection: its last statement is a ``LISTEN``, and it waits
    for notifications from then on, ``storage/listen.py``). SQLite has no LISTEN:
    the workers poll, nothing to wait for."""
    if backend(database_url) == "sqlite":
        return
    engine = sa.create_engine(database_url)
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )

    def listening() -> bool:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one()) >= count

    try:
        eventually(listening, timeout, f"{count} workers to LISTEN")
    finally:
        engine.dispose()


# -- set-up and publishing ---------------------------------------------------------------


def org_with_endpoint(engine: Engine, database_url: str, url: str) -> tuple[str, dict[str, str]]:
    """A new organisation with one ``*`` configuration pointing at ``url``."""
    org_id, keys = make_org_and_keys(engine)
    configs.put_config(
        engine,
        make_settings(database_url),
        org_id,
        config_id="",
        url=url,
        event_types=["*"],
        secret=None,
        enabled=None,
        description="",
    )
    return org_id, keys


def publish(target: str, key: str, org_id: str, event_ids: Sequence[str]) -> None:
    """Publish ``event_ids`` (500 per call); each must make one delivery."""
    with PublisherClient(target, key) as pub:
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            results = pub.publish_events(
                [
                    make_publish_request(org_id, "reward.claimed", example("reward.claimed"), id=i)
                    for i in chunk
                ]
            )
            assert all(r.deliveries == 1 and not r.duplicate for r in results)


# -- reading the outcome -----------------------------------------------------------------


def statuses(engine: Engine, config_id: str | None = None) -> dict[str, int]:
    """The count of deliveries per status (of one configuration's, given ``config_id``)."""
    where = "" if config_id is None else " WHERE config_id = :config_id"
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT status, count(*) FROM deliveries{where} GROUP BY status"),
            {"config_id": config_id},
        )
        return {r[0]: int(r[1]) for r in rows}


def pending_summary(engine: Engine) -> str:
    """Pending deliveries (for failure messages): id, attempts, due, claimed."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, attempts, next_attempt_at, claim_token IS NOT NULL FROM deliveries"
                " WHERE status = 'pending' ORDER BY id LIMIT 20"
            )
        ).all()
        activity: Sequence[Any] = []
        if engine.dialect.name == "postgresql":
            activity = conn.execute(
                sa.text(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 120),"
                    " now() - xact_start FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
    return (
        f"now {datetime.now(UTC)}; pending {[tuple(r) for r in rows]};"
        f" sessions {[tuple(a) for a in activity]}"
    )


def final_statuses(engine: Engine) -> dict[str, str]:
    """Delivery status per event id."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.event_id, d.status FROM deliveries d JOIN events e ON e.pk = d.event_pk"
            )
        )
        return {r[0]: r[1] for r in rows}


@dataclass(frozen=True)
class AttemptRow:
    delivery_id: int
    attempt: int
    outcome: str
    status_code: int
    error: str
    truncated: bool
    attempted_at: datetime
    next_attempt_at: datetime | None
    duration_ms: int


def aware(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def attempts_by_event(engine: Engine) -> dict[str, list[AttemptRow]]:
    """Logged attempts per event id, in attempt order."""
    out: dict[str, list[AttemptRow]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_id, delivery_id, attempt, outcome, response_status_code, error,"
                " response_body_truncated, attempted_at, next_attempt_at, duration_ms"
                " FROM delivery_attempts ORDER BY event_id, attempt, id"
            )
        )
        for r in rows:
            out.setdefault(r[0], []).append(
                AttemptRow(r[1], r[2], r[3], r[4], r[5], bool(r[6]), aware(r[7]), aware(r[8]), r[9])
            )
    return out

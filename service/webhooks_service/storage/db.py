"""Engines, connection settings and schema migration.

One function makes every engine (``create_engine``) so that SQLite and
PostgreSQL get their settings in one place, and one function brings a
database to the current schema (``upgrade``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from webhooks_service.errors import ConfigurationError, TransactionConflict
from webhooks_service.storage.errors import mapped

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000

# One writer lock per SQLite database per process (see write_transaction).
_SQLITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_LOCKS_GUARD = threading.Lock()


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite in WAL mode, or PostgreSQL through psycopg 3.

    Raises ConfigurationError for a URL that is not one of the two. SQL
    parameters are kept out of error messages (``hide_parameters``): they hold
    webhook secrets, payloads and key hashes, and errors end up in logs.
    """
    kwargs.setdefault("hide_parameters", True)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database).expanduser().resolve())
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        try:
            return sa.create_engine(parsed, **kwargs)
        except NoSuchModuleError as exc:
            raise ConfigurationError(f"unsupported PostgreSQL driver in {url!r}") from exc
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql+psycopg://…"
    )


def _create_private_file(path: Path) -> None:
    """Create a new SQLite database file (and its folder) readable by its owner
    only. SQLite gives the WAL and shared-memory files the database file's
    mode, so they are 0600 too. Existing files are left as they are."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite reports the real problem when it opens the file
    os.close(fd)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_on_begin), so that write
    # transactions can take the write lock up front.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # Write transactions (see write_transaction) take the write lock up front
    # with BEGIN IMMEDIATE: a deferred transaction that reads and then writes
    # fails with "database is locked" instead of waiting for the busy timeout.
    # Readers use a plain BEGIN and, in WAL mode, never wait for the writer.
    immediate = conn.get_execution_options().get("sqlite_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """THE way to open a transaction that will write: commits on success, rolls
    back on error.

    On SQLite, writers of one process first take a per-database process lock,
    so that they queue in Python instead of in SQLite's sleeping busy handler,
    and then the database's write lock at BEGIN (``BEGIN IMMEDIATE``, waiting
    up to the busy timeout for other processes). On PostgreSQL it is an
    ordinary transaction.

    The driver's errors leave as the service's own (``storage/errors.py``).
    """
    if not is_sqlite(engine):
        with mapped(), engine.connect() as conn, conn.begin():
            yield conn
        return
    key = str(engine.url)
    with _SQLITE_LOCKS_GUARD:
        lock = _SQLITE_LOCKS.setdefault(key, threading.RLock())
    with mapped(), lock, engine.connect() as conn:
        conn.execution_options(sqlite_write=True)
        with conn.begin():
            yield conn


T = TypeVar("T")

# A transaction the database aborted to break a deadlock (or a serialization
# failure) is run again, at most this many times in all, after a short pause.
CONFLICT_ATTEMPTS = 3
CONFLICT_PAUSE_SECONDS = 0.05


def retrying_write(engine: Engine, work: Callable[[sa.Connection], T]) -> T:
    """``work(conn)`` in a write transaction, run again when the database aborted
    it as one side of a deadlock or a serialization failure (``TransactionConflict``):
    for admin writes that lock many rows a worker's finish may be writing too
    (DeleteWebhookConfig and the queue of its endpoint). ``work`` must do nothing
    outside the transaction that cannot be done twice."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except TransactionConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            time.sleep(CONFLICT_PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")


@contextmanager
def read_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A transaction that only reads (a consistent snapshot on both backends)."""
    with mapped(), engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def connection(engine: Engine) -> Iterator[sa.Connection]:
    """A connection without a transaction of ours (autocommit, LISTEN, probes),
    the driver's errors mapped like the transactions'."""
    with mapped(), engine.connect() as conn:
        yield conn


def has_schema(engine: Engine) -> bool:
    """Whether the database has been migrated at least once (``alembic_version``)."""
    with connection(engine) as conn:
        return sa.inspect(conn).has_table("alembic_version")


def ping(engine: Engine) -> None:
    """One round trip to the database (a fresh connection if the pooled one
    broke); DatabaseError if it fails."""
    with connection(engine) as conn:
        conn.execute(sa.text("SELECT 1"))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases, in-memory ones and
    URLs that do not parse: ``create_engine`` reports those)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def shown_url(url: str) -> str:
    """The URL as the operator should read it: SQLite paths absolute, password hidden."""
    path = sqlite_file(url)
    if path is not None:
        return f"sqlite:///{path}"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration to the engine's database."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with write_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

"""Storage raises the service's own errors (storage/errors.py), on both databases.

Real databases, real driver errors: a duplicate key, a missing reference, an
unreachable server, a PostgreSQL deadlock and a SQLite writer that stays busy
each come out of ``db.write_transaction`` / ``db.connection`` as the class
the caller can act on, with the driver's exception as the cause and the
gRPC code the API answers.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.server import make_org
from webhooks_service import errors
from webhooks_service.api.errors import to_status
from webhooks_service.storage import config_deletion, configs, db
from webhooks_service.storage import errors as errors_module

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _insert_org(conn: sa.Connection, org_id: str) -> None:
    conn.execute(
        sa.text("INSERT INTO organisations (id, name, created_at) VALUES (:id, 'x', :now)"),
        {"id": org_id, "now": NOW},
    )


def test_a_duplicate_key_is_a_conflict(engine: Engine) -> None:
    with db.write_transaction(engine) as conn:
        _insert_org(conn, "org_dup")
    with pytest.raises(errors.DuplicateKey) as err, db.write_transaction(engine) as conn:
        _insert_org(conn, "org_dup")
    assert isinstance(err.value, errors.Conflict)
    assert isinstance(err.value.__cause__, sa.exc.IntegrityError)
    code, status = to_status(err.value)
    assert code is grpc.StatusCode.ABORTED
    assert "org_dup" not in status.message  # the driver's text stays in the log


def test_a_missing_reference_is_not_found(engine: Engine) -> None:
    row = configs.ConfigRow(
        "whc_x", "org_gone", "https://a.example/", ("*",), True, "", "s", "", NOW, NOW
    )
    with pytest.raises(errors.MissingReference) as err, db.write_transaction(engine) as conn:
        configs.insert(conn, row)
    assert isinstance(err.value, errors.NotFound)
    assert to_status(err.value)[0] is grpc.StatusCode.NOT_FOUND


def test_an_unreachable_database_is_unavailable() -> None:
    dead = db.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_pre_ping=False)
    try:
        with pytest.raises(errors.DatabaseUnavailable) as err, db.read_transaction(dead):
            pass
    finally:
        dead.dispose()
    assert not isinstance(err.value, errors.TransactionConflict)
    assert "127.0.0.1" in err.value.detail or "connect" in err.value.detail.lower()
    code, status = to_status(err.value)
    assert code is grpc.StatusCode.UNAVAILABLE
    assert status.message == "the database is unavailable; retry later"


def test_a_statement_the_database_fails_is_internal(engine: Engine) -> None:
    with pytest.raises(errors.DatabaseError) as err, db.connection(engine) as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert type(err.value) is errors.DatabaseError
    code, status = to_status(err.value)
    assert code is grpc.StatusCode.INTERNAL and "no_such_table" not in status.message


@pytest.mark.postgres
def test_a_postgresql_deadlock_is_a_transaction_conflict(postgres_url: str) -> None:
    engine = db.create_engine(postgres_url)
    a, b = make_org(engine, "A"), make_org(engine, "B")
    both_hold_one = threading.Barrier(2, timeout=10)
    outcomes: list[BaseException | None] = []

    def cross(first: str, second: str) -> None:
        touch = sa.text("UPDATE organisations SET name = name WHERE id = :id")
        try:
            with db.write_transaction(engine) as conn:
                conn.execute(touch, {"id": first})
                both_hold_one.wait()
                conn.execute(touch, {"id": second})
        except BaseException as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    threads = [threading.Thread(target=cross, args=p) for p in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    engine.dispose()
    failed = [o for o in outcomes if o is not None]
    assert len(outcomes) == 2 and len(failed) == 1, outcomes  # PostgreSQL picks one victim
    assert isinstance(failed[0], errors.TransactionConflict), failed
    assert "deadlock" in failed[0].detail
    assert to_status(failed[0])[0] is grpc.StatusCode.UNAVAILABLE


def test_a_sqlite_writer_that_stays_busy_is_a_transaction_conflict(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.ping(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's writer, holding the lock
    try:
        with pytest.raises(errors.TransactionConflict) as err, db.connection(engine) as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert "locked" in err.value.detail


def test_a_write_the_database_aborted_as_a_deadlock_runs_again(engine: Engine) -> None:
    calls: list[int] = []

    def work(conn: sa.Connection) -> str:
        calls.append(1)
        _insert_org(conn, f"org_retry{len(calls)}")
        if len(calls) < db.CONFLICT_ATTEMPTS:
            raise errors.TransactionConflict(errors_module.CONFLICT_MESSAGE)
        return "done"

    assert db.retrying_write(engine, work) == "done"
    assert len(calls) == db.CONFLICT_ATTEMPTS
    with db.read_transaction(engine) as conn:  # the aborted runs left nothing behind
        ids = conn.execute(sa.text("SELECT id FROM organisations WHERE id LIKE 'org_retry%'"))
        assert [r[0] for r in ids] == [f"org_retry{db.CONFLICT_ATTEMPTS}"]

    def always(conn: sa.Connection) -> None:
        raise errors.TransactionConflict(errors_module.CONFLICT_MESSAGE)

    with pytest.raises(errors.TransactionConflict):  # not for ever: UNAVAILABLE, retry later
        db.retrying_write(engine, always)


def test_deleting_a_config_leaves_its_foreign_keys_free(engine: Engine) -> None:
    """DeleteWebhookConfig locks the configuration row FOR NO KEY UPDATE: a worker
    finishing a batch for that endpoint can still insert rows that reference it (a
    new hour of its stats), so the deletion waiting for that worker's delivery rows
    cannot deadlock with it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row lock modes are PostgreSQL's; SQLite serialises writers")
    org_id = "org_del_fk"
    with db.write_transaction(engine) as conn:
        _insert_org(conn, org_id)
        configs.insert(
            conn,
            configs.ConfigRow(
                "whc_del_fk", org_id, "https://a.example/", ("*",), True, "", "s", "", NOW, NOW
            ),
        )
    with engine.connect() as deleting, deleting.begin():
        assert config_deletion.delete_config(deleting, org_id, "whc_del_fk", now=NOW)
        with engine.connect() as worker, worker.begin():  # while the deletion is open
            worker.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            worker.execute(
                sa.text(
                    "INSERT INTO endpoint_stats (config_id, hour, bucket, attempts, failures)"
                    " VALUES ('whc_del_fk', :hour, 0, 1, 0)"
                ),
                {"hour": NOW},
            )

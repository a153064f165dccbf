"""The operator's first hour with the CLI (issue 14): commands never create a
database by accident, usage errors come from the command used, listen
addresses are checked before anything else, help is plain text, and the
gateway does not report itself up while its only upstream is down."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, _postgres_unavailable
from tests.support.envoy import require_envoy
from tests.support.server import running_server
from tests.test_cli import Result, assert_one_line_error, free_port, webhooks  # noqa: F401

EXE = str(Path(sys.executable).with_name("webhooks"))


def test_operator_commands_never_create_a_database(
    webhooks: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # "another directory": the default URL is relative
    created = webhooks("orgs", "create", "Acme")
    assert_one_line_error(
        created, f"no database at sqlite:///{tmp_path}/.webhooks/webhooks.db: create it with "
    )
    assert "webhooks db upgrade" in created.stderr and "WEBHOOKS_DATABASE_URL" in created.stderr
    assert not (tmp_path / ".webhooks").exists()
    for command in (["keys", "create", "--org", "org_x", "--scope", "webhooks:read"],
                    ["secrets", "reseal"], ["prune"]):  # fmt: skip
        result = webhooks(*command)
        assert_one_line_error(result, "no database at")
    assert not (tmp_path / ".webhooks").exists()

    nowhere = webhooks("orgs", "list", "--database-url", "sqlite:////nonexistent/dir/x.db")
    assert_one_line_error(nowhere, "no database at sqlite:////nonexistent/dir/x.db")
    assert not Path("/nonexistent").exists()

    url = f"sqlite:///{tmp_path}/ok.db"
    upgraded = webhooks("db", "upgrade", "--database-url", url)
    assert upgraded.returncode == 0 and "is up to date" in upgraded.stdout
    assert webhooks("orgs", "create", "Acme", "--database-url", url).returncode == 0


def test_an_empty_database_file_is_not_given_a_schema_by_accident(
    webhooks: Callable[..., Result],  # noqa: F811
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = webhooks("orgs", "list", "--database-url", f"sqlite:///{empty}")
    assert_one_line_error(result, "has no webhooks schema: create it with `webhooks db upgrade`")


def test_unknown_option_shows_the_commands_own_usage(
    webhooks: Callable[..., Result],  # noqa: F811
) -> None:
    result = webhooks("serve", "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: webhooks serve ")
    assert "webhooks serve: error: unrecognized arguments: --bogus" in result.stderr


@pytest.mark.parametrize("command", ["gateway", "run"])
def test_help_is_plain_text(webhooks: Callable[..., Result], command: str) -> None:  # noqa: F811
    text = webhooks(command, "--help").stdout
    assert "``" not in text and ":class:" not in text
    assert "Ctrl-C" in text


def _service(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_bad_grpc_port_is_refused_before_anything_else(tmp_path: Path) -> None:
    result = _service("serve", "--grpc-listen", "127.0.0.1:99999", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "webhooks: error: --grpc-listen '127.0.0.1:99999': the port must be 0 to 65535"
    )
    assert not (tmp_path / ".webhooks").exists()  # no migration ran


@pytest.mark.parametrize(
    ("option", "variable"),
    [("--grpc-listen", "WEBHOOKS_GRPC_LISTEN"), ("--metrics-listen", "WEBHOOKS_METRICS_LISTEN")],
)
def test_port_in_use_is_one_line_naming_the_option(
    tmp_path: Path, option: str, variable: str
) -> None:
    """A second `serve` on one machine: the gRPC or the metrics port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = ["--grpc-listen", f"127.0.0.1:{free_port()}"]
        if option == "--grpc-listen":
            others = ["--metrics-listen", ""]
        result = _service("serve", option, f"127.0.0.1:{port}", *others, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no C-core log line before it
    assert lines[0].startswith(f"webhooks: error: cannot listen on 127.0.0.1:{port} ({option})")
    assert "already in use" in lines[0] and variable in lines[0]
    assert not (tmp_path / ".webhooks").exists()


@pytest.mark.gateway
@pytest.mark.timeout(120)
def test_gateway_waits_for_its_only_upstream_before_reporting_up(
    database_url: str, tmp_path: Path
) -> None:
    require_envoy()
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "gateway", "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        waiting = proc.stderr.readline()
        assert "waiting for an API process" in waiting and f"127.0.0.1:{port}" in waiting
        ready, _, _ = select.select([proc.stdout], [], [], 1.5)
        assert not ready, "reported up with no healthy upstream"
        with running_server(database_url, {"grpc_listen": f"127.0.0.1:{port}"}):
            up = proc.stdout.readline()
        assert up.startswith("gateway: REST on http://127.0.0.1:") and "1 of 1 healthy" in up
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.postgres
def test_postgresql_without_the_database_or_its_schema(
    webhooks: Callable[..., Result],  # noqa: F811
) -> None:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"wh_empty_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _postgres_unavailable(str(exc.orig).strip().splitlines()[0])
    try:
        base = make_url(POSTGRES_ADMIN_URL)
        empty = base.set(database=name).render_as_string(hide_password=False)
        result = webhooks("orgs", "list", "--database-url", empty)
        assert_one_line_error(
            result, "has no webhooks schema: create it with `webhooks db upgrade`"
        )
        engine = sa.create_engine(empty)
        with engine.connect() as conn:
            assert not sa.inspect(conn).get_table_names()  # nothing was created
        engine.dispose()
        missing = base.set(database=f"{name}_missing").render_as_string(hide_password=False)
        result = webhooks("keys", "create", "--platform", "--database-url", missing)
        assert_one_line_error(result, "does not exist (create the database")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

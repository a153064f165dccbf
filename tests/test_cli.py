"""The ``webhooks`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.polling import eventually
from tests.support.server import running_server
from webhooks_client import AdminClient, PermissionDeniedError
from webhooks_service import cli

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["orgs"],
    ["orgs", "create"],
    ["orgs", "list"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def webhooks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run the CLI in-process (``cli.main``), with a clean WEBHOOKS_* environment.

    In-process keeps the suite fast; ``test_serve_…`` runs the real
    executable in a subprocess.
    """
    for name in list(os.environ):
        if name.startswith("WEBHOOKS_"):
            monkeypatch.delenv(name)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            capsys.readouterr()
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # --help, usage errors
                code = int(exc.code or 0)
            out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def assert_one_line_error(result: Result, text: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("webhooks: error:"), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "webhooks")
def test_every_command_has_help(webhooks: Callable[..., Result], command: list[str]) -> None:
    result = webhooks(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: webhooks")


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("webhooks")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "serve" in result.stdout


def test_options_name_their_environment_variables(webhooks: Callable[..., Result]) -> None:
    text = webhooks("serve", "--help").stdout
    for variable in ("WEBHOOKS_DATABASE_URL", "WEBHOOKS_GRPC_LISTEN", "WEBHOOKS_LOG_LEVEL"):
        assert variable in text
    assert "WEBHOOKS_DATABASE_URL" in webhooks("keys", "create", "--help").stdout


def test_orgs_and_keys_from_the_command_line(
    webhooks: Callable[..., Result], database_url: str
) -> None:
    env = {"WEBHOOKS_DATABASE_URL": database_url}
    created = webhooks("orgs", "create", "Acme Inc", env=env)
    assert created.returncode == 0, created.stderr
    org_id = created.stdout.strip()
    assert re.fullmatch(r"org_[0-9a-f]{20}", org_id)
    listing = webhooks("orgs", "list", env=env)
    assert f"{org_id}\t" in listing.stdout and "Acme Inc" in listing.stdout

    key = webhooks(
        "keys", "create", "--org", org_id, "--scope", "webhooks:read", "--scope", "webhooks:write",
        env=env,
    )  # fmt: skip
    assert key.returncode == 0, key.stderr
    raw = key.stdout.strip()
    assert raw.startswith("whk_") and len(key.stdout.splitlines()) == 1
    assert "not shown again" in key.stderr
    platform = webhooks("keys", "create", "--platform", "--database-url", database_url)
    assert platform.returncode == 0, platform.stderr

    with running_server(database_url) as srv:
        with AdminClient(srv.target, raw) as client:
            client.put_webhook_config(url="https://example.com", event_types=["*"])
            assert len(client.list_webhook_configs()) == 1
        with (
            AdminClient(srv.target, platform.stdout.strip()) as client,
            pytest.raises(PermissionDeniedError),
        ):
            client.list_webhook_configs()


def test_key_errors_are_one_line(webhooks: Callable[..., Result], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    assert webhooks("db", "upgrade", "--database-url", url).returncode == 0
    unknown = webhooks("keys", "create", "--org", "org_nope", "--scope", "webhooks:read",
                       "--database-url", url)  # fmt: skip
    assert_one_line_error(unknown, "organisation 'org_nope' does not exist")
    bad_scope = webhooks("keys", "create", "--org", "org_x", "--scope", "admin",
                         "--database-url", url)  # fmt: skip
    assert_one_line_error(bad_scope, "unknown scope admin")
    no_scope = webhooks("keys", "create", "--org", "org_x", "--database-url", url)
    assert_one_line_error(no_scope, "at least one scope")


def test_bad_database_urls_are_one_line_errors(webhooks: Callable[..., Result]) -> None:
    assert_one_line_error(
        webhooks("orgs", "list", "--database-url", "mysql://x/y"), "unsupported database URL"
    )
    assert_one_line_error(
        webhooks("orgs", "list", env={"WEBHOOKS_DATABASE_URL": "not a url"}),
        "database URL",
    )
    unreachable = webhooks(
        "orgs", "list", "--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/x"
    )
    assert_one_line_error(unreachable, "cannot use the database at")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_serving(target: str, deadline: float) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        eventually(
            serving, max(0.0, deadline - time.monotonic()), f"{target} SERVING", interval=0.1
        )


@pytest.mark.slow
def test_serve_reflection_health_and_graceful_stop(tmp_path: Path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env |= {
        "WEBHOOKS_DATABASE_URL": f"sqlite:///{tmp_path}/fresh/w.db",  # migrated at start
        "WEBHOOKS_GRPC_LISTEN": target,
        "WEBHOOKS_LOG_LEVEL": "WARNING",
        "WEBHOOKS_SHUTDOWN_GRACE": "2",
        "WEBHOOKS_METRICS_LISTEN": "127.0.0.1:0",  # the default port may be another's
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhooks_service.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_serving(target, time.monotonic() + 30)
        with grpc.insecure_channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in answer.list_services_response.service}
        assert {"webhooks.v1.WebhookAdmin", "webhooks.v1.EventPublisher"} <= names

        in_use = subprocess.run(
            [sys.executable, "-m", "webhooks_service.cli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert_one_line_error_last(in_use, f"cannot listen on {target}")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert f"serving gRPC on {target}" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def assert_one_line_error_last(result: subprocess.CompletedProcess[str], text: str) -> None:
    """Like assert_one_line_error, tolerating gRPC core's own log line before ours."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"webhooks: error: {text}")


def test_orgs_verification_from_the_command_line(
    webhooks: Callable[..., Result], database_url: str
) -> None:
    from webhooks_service.storage import configs as config_store
    from webhooks_service.storage import db

    env = {"WEBHOOKS_DATABASE_URL": database_url}
    org_id = webhooks("orgs", "create", "Verifies", env=env).stdout.strip()
    engine = db.create_engine(database_url)
    try:
        for state, required in (("on", True), ("off", False)):
            done = webhooks("orgs", "verification", org_id, state, env=env)
            assert done.returncode == 0, done.stderr
            with engine.connect() as conn:
                assert config_store.requires_verification(conn, org_id) is required
    finally:
        engine.dispose()
    missing = webhooks("orgs", "verification", "org_00000000000000000000", "on", env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr

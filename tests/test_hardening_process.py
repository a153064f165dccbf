"""Sealed by default, and an Envoy that dies with its parent (issue #13, items 3 and 5).

``webhooks run`` as a user runs it (``make run``): a real process tree on a
fresh SQLite database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.envoy import require_envoy, running_gateway
from tests.support.polling import eventually
from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway import EnvoyProcess, GatewayConfig, GatewayFiles, find_gateway_dir
from webhooks_service.gateway.config import parse_address
from webhooks_service.gateway.process import STATE_FILE, TMP_PREFIX

pytestmark = [pytest.mark.gateway, pytest.mark.timeout(120)]

WEBHOOKS = str(Path(sys.executable).parent / "webhooks")


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"exited {proc.wait()} before {pattern!r}:\n{''.join(seen)}")
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    pytest.fail(f"no {pattern!r} within {timeout}s:\n{''.join(seen)}")


class Stack:
    def __init__(self, proc: subprocess.Popen[str], banner: str, db: Path) -> None:
        self.proc, self.banner, self.db = proc, banner, db
        rest = re.search(r"REST gateway\s+(http://\S+)", banner)
        key = re.search(r"WEBHOOKS_KEY=(whk_\S+)", banner)
        assert rest and key, banner
        self.rest, self.key = rest.group(1), key.group(1)

    @property
    def port(self) -> int:
        return int(self.rest.rsplit(":", 1)[1])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_envoy()
    db = tmp_path / "state" / "webhooks.db"
    proc = subprocess.Popen(
        [
            WEBHOOKS,
            "run",
            "--database-url",
            f"sqlite:///{db}",
            "--grpc-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--log-level",
            "WARNING",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as `make run` does: no WEBHOOKS_SECRET_KEY, a permissive umask
        env={k: v for k, v in os.environ.items() if k != "WEBHOOKS_SECRET_KEY"}
        | {"PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        yield Stack(proc, _read_until(proc, "Ctrl-C stops both"), db)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_run_database_seals_secrets_and_its_files_are_0600(stack: Stack) -> None:
    auth = {"authorization": f"Bearer {stack.key}"}
    created = httpx.put(
        f"{stack.rest}/webhooks/configs",
        headers=auth,
        json={"url": "https://example.com/hook", "event_types": ["*"]},
    )
    assert created.status_code == 200, created.text
    given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    put = httpx.put(
        f"{stack.rest}/webhooks/configs",
        headers=auth,
        json={"url": "https://example.com/given", "event_types": ["*"], "secret": given},
    )
    assert put.status_code == 200, put.text

    key_file = stack.db.with_name(stack.db.name + ".key")
    files = [stack.db, key_file] + [
        p for p in (Path(f"{stack.db}-wal"), Path(f"{stack.db}-shm")) if p.exists()
    ]
    assert Path(f"{stack.db}-wal").exists()  # WAL mode: checked while the service runs
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}
    assert _mode(stack.db.parent) == 0o700
    for path in (stack.db, Path(f"{stack.db}-wal")):
        assert b"whsec_" not in path.read_bytes(), f"a secret in clear in {path.name}"
    with sqlite3.connect(f"file:{stack.db}?mode=ro", uri=True) as conn:
        stored = [row[0] for row in conn.execute("SELECT secret FROM webhook_configs")]
    assert len(stored) == 2 and all(s.startswith("enc:v1:") for s in stored)


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _gateway_folders(owner: int) -> list[Path]:
    found = []
    for folder in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        try:
            if json.loads((folder / STATE_FILE).read_text())["owner_pid"] == owner:
                found.append(folder)
        except (OSError, ValueError, KeyError):
            continue
    return found


def test_sigkill_of_run_frees_the_rest_port_within_2_s(stack: Stack) -> None:
    assert not _refused(stack.port)
    folders = _gateway_folders(stack.proc.pid)
    assert len(folders) == 1
    stack.proc.send_signal(signal.SIGKILL)
    stack.proc.wait()
    killed = time.monotonic()
    eventually(lambda: _refused(stack.port), 2.0, "Envoy to free the REST port")
    print(f"\nREST port free {time.monotonic() - killed:.2f} s after SIGKILL of webhooks run")
    # The dead gateway's folder is removed by the next gateway's start (ours, or
    # one another test process started meanwhile: the folders are in the shared
    # temporary directory, so whether it still exists here is not ours to assert).
    with running_gateway(["127.0.0.1:1"]):
        assert not folders[0].exists()


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from webhooks_service.gateway import process
    from webhooks_service.gateway import EnvoyProcess, GatewayConfig, GatewayFiles
    from webhooks_service.gateway import find_gateway_dir, parse_address
    process._die_with_parent = lambda: []  # as before the fix: Envoy outlives us
    config = GatewayConfig(
        listen=parse_address(sys.argv[1], what="listen"),
        upstreams=(parse_address("127.0.0.1:1", what="upstream"),),
        files=GatewayFiles.in_dir(find_gateway_dir()),
    )
    envoy = EnvoyProcess(config, log_level="error", concurrency=1).start()
    print("READY", envoy.pid, flush=True)
    time.sleep(600)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_leftover_envoy_holding_the_port_is_named_in_the_error() -> None:
    require_envoy()
    port = _free_port()
    owner = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    orphan = 0
    try:
        line = _read_until(owner, "READY")
        orphan = int(line.split()[-1])
        owner.send_signal(signal.SIGKILL)  # the crash: Envoy is left running
        owner.wait()
        assert not _refused(port)
        config = GatewayConfig(
            listen=parse_address(f"127.0.0.1:{port}", what="listen"),
            upstreams=(parse_address("127.0.0.1:1", what="upstream"),),
            files=GatewayFiles.in_dir(find_gateway_dir()),
        )
        with pytest.raises(ConfigurationError) as err:
            EnvoyProcess(config, log_level="error", concurrency=1).start()
        message = str(err.value)
        assert "already in use" in message
        assert f"Envoy pid {orphan}" in message and f"kill {orphan}" in message
    finally:
        if owner.poll() is None:
            owner.kill()
        if orphan:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)


def test_postgresql_without_a_secret_key_warns_at_start(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from webhooks_service.config import Settings
    from webhooks_service.core.secrets_at_rest import resolve_key
    from webhooks_service.storage import db

    engine = db.create_engine(postgres_url)
    try:
        with caplog.at_level("WARNING"):
            settings = resolve_key(Settings(database_url=postgres_url), engine)
    finally:
        engine.dispose()
    assert settings.secret_key == ""
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("WEBHOOKS_SECRET_KEY is not set" in m and "in clear" in m for m in warned)


def test_reseal_seals_an_older_embedded_databases_clear_rows_with_the_key_file(
    tmp_path: Path,
) -> None:
    from webhooks_service.config import Settings
    from webhooks_service.core import configs
    from webhooks_service.storage import db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    env = {k: v for k, v in os.environ.items() if k != "WEBHOOKS_SECRET_KEY"}
    subprocess.run([WEBHOOKS, "db", "upgrade", "--database-url", url], check=True, env=env)
    org = subprocess.run(
        [WEBHOOKS, "orgs", "create", "Old", "--database-url", url],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    engine = db.create_engine(url)
    try:  # a row written in clear, as before sealing by default
        configs.put_config(
            engine,
            Settings(database_url=url),
            org,
            config_id="",
            url="https://example.com/o",
            event_types=["*"],
            secret=None,
            enabled=None,
            description="",
        )
        done = subprocess.run(
            [WEBHOOKS, "secrets", "reseal", "--database-url", url],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        assert "sealed the secrets of 1 webhook configuration" in done.stdout
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT secret FROM webhook_configs").scalar_one()
    finally:
        engine.dispose()
    assert stored.startswith("enc:v1:")
    assert _mode(tmp_path / "old.db.key") == 0o600

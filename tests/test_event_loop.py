"""The ``event_loop`` setting (commands/_event_loop.py): what ``auto``,
``asyncio`` and ``uvloop`` resolve to, the error when uvloop is asked for but
missing, and ``webhooks serve`` / ``worker`` really running on the chosen loop
(their start-up log line) while serving RPCs and delivering."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.faults import worker_process
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Reply, running_receiver
from tests.support.server import make_org_and_keys
from webhooks_client import AdminClient, PublisherClient
from webhooks_service import config
from webhooks_service.commands import _event_loop
from webhooks_service.errors import ConfigurationError
from webhooks_service.storage import db

WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")
uvloop = pytest.importorskip("uvloop")  # the dev venv has the extra


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import uvloop`` raises ImportError, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


# -- resolving the setting -------------------------------------------------------------


def test_the_setting_is_declared_once_with_auto_as_default() -> None:
    assert config.Settings().event_loop == "auto"
    assert config.Settings.load(env={}).event_loop == "auto"
    loaded = config.Settings.load(env={"WEBHOOKS_EVENT_LOOP": " UVLOOP "})
    assert loaded.event_loop == "uvloop"
    with pytest.raises(ConfigurationError, match="event loop 'trio': use auto, asyncio or uvloop"):
        config.Settings.load(env={"WEBHOOKS_EVENT_LOOP": "trio"})


@pytest.mark.parametrize(
    ("setting", "name"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_auto_and_uvloop_pick_uvloop_when_installed(setting: str, name: str) -> None:
    choice = _event_loop.choose(setting)
    assert choice.name == name
    if name == "uvloop":
        assert choice.factory is uvloop.new_event_loop
        assert choice.version == uvloop.__version__
    else:
        assert choice.factory is None  # exactly asyncio.run's loop


@pytest.mark.usefixtures("no_uvloop")
def test_without_uvloop_auto_is_asyncio_and_uvloop_is_an_error() -> None:
    choice = _event_loop.choose("auto")
    assert (choice.name, choice.factory) == ("asyncio", None)
    assert "not installed" in choice.reason
    assert _event_loop.choose("asyncio").name == "asyncio"
    with pytest.raises(ConfigurationError) as caught:
        _event_loop.choose("uvloop")
    message = str(caught.value)
    assert message.startswith("event loop 'uvloop': uvloop is not installed")
    assert "webhooks-service[uvloop]" in message


@pytest.mark.parametrize("setting", ["auto", "asyncio", "uvloop"])
def test_run_runs_the_coroutine_on_the_chosen_loop(setting: str) -> None:
    async def loop_type() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    choice = _event_loop.choose(setting)
    ran = _event_loop.run(loop_type(), choice, command="test")
    assert (ran is uvloop.Loop) == (choice.name == "uvloop")


@pytest.mark.usefixtures("no_uvloop")
def test_a_missing_uvloop_is_a_one_line_error_before_the_database_is_touched(
    tmp_path: Path,
) -> None:
    from webhooks_service import cli

    url = f"sqlite:///{tmp_path}/never.db"
    for command in ("worker", "serve"):
        code = cli.main([command, "--database-url", url, "--event-loop", "uvloop"])
        assert code == 2
    assert not (tmp_path / "never.db").exists()


# -- serve and worker, as child processes ----------------------------------------------


def _env(database_url: str, loop: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")},
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_EVENT_LOOP": loop,
        "WEBHOOKS_GRPC_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_METRICS_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_POLL_INTERVAL": "60",  # a prompt delivery is the wake-up, not a poll
        "WEBHOOKS_SHUTDOWN_GRACE": "5",
        "WEBHOOKS_LOG_LEVEL": "INFO",
        "WEBHOOKS_LOG_FORMAT": "json",
    }


def _loop_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if "event_loop" in record:
                lines.append(record)
    return lines


@contextmanager
def serving(database_url: str, loop: str, log_path: Path) -> Iterator[tuple[Any, str]]:
    """``webhooks serve`` on ``loop``; yields the process and its gRPC target."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [WEBHOOKS, "serve"],
            env=_env(database_url, loop),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        found: list[str] = []

        def started() -> bool:
            for line in log_path.read_text(errors="replace").splitlines():
                if "serving gRPC on " in line:
                    found.append(line.rsplit(" ", 1)[1].strip())
                    return True
            return proc.poll() is not None

        eventually(started, 30, "webhooks serve to start")
        assert found, f"webhooks serve exited: {log_path.read_text()}"
        yield proc, found[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_on_the_chosen_loop_answers_rpcs_delivers_and_stops_gracefully(
    database_url: str, loop: str, tmp_path: Path
) -> None:
    """gRPC health, reflection (a bidirectional stream), admin and publish calls,
    the publish hand-off to the in-process worker, and SIGTERM with a delivery
    in flight: on uvloop exactly as on asyncio."""
    engine = db.create_engine(database_url)
    org_id, keys = make_org_and_keys(engine)
    log_path = tmp_path / "serve.log"
    with running_receiver() as rx, serving(database_url, loop, log_path) as (proc, target):
        (line,) = _loop_lines(log_path.read_text())
        assert (line["command"], line["event_loop"]) == ("serve", loop)

        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            requests = [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="grpc.health.v1.Health"
                ),
            ]
            answers = list(reflection.ServerReflectionInfo(iter(requests), timeout=5))
        assert len(answers) == 2
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"webhooks.v1.WebhookAdmin", "webhooks.v1.EventPublisher"} <= names

        rx.program("/slow", Reply(200, delay=1.5))
        with AdminClient(target, keys["all"]) as admin:
            admin.put_webhook_config(url=rx.url("/w"), event_types=["reward.*"])
            admin.put_webhook_config(url=rx.url("/slow"), event_types=["user.*"])
            assert len(admin.list_webhook_configs()) == 2
            with PublisherClient(target, keys["events:publish"]) as pub:
                started = time.monotonic()
                data = example("reward.claimed")
                for n in range(20):
                    pub.publish_event(org_id, "reward.claimed", data, id=f"e{n}")
                rx.wait_for(20, "/w", timeout=10)
                assert time.monotonic() - started < 5  # hand-off/wake-up, not the 60 s poll
                eventually(
                    lambda: len(admin.list_delivery_logs(page_size=50).logs) == 20,
                    10,
                    "20 logged attempts",
                )
                slow = "user.profile_created"
                pub.publish_event(org_id, slow, example(slow), id="slow")
            rx.wait_for(1, "/slow", timeout=10)  # now in flight for 1.5 s
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    log = log_path.read_text()
    assert "Traceback" not in log, log
    query = sa.text("SELECT outcome FROM delivery_attempts WHERE organisation_id = :org")
    with engine.connect() as conn:  # the in-flight attempt finished and was recorded
        outcomes = conn.execute(query, {"org": org_id}).scalars().all()
    assert len(outcomes) == 21, outcomes
    engine.dispose()


@pytest.mark.slow
def test_worker_on_uvloop_delivers(database_url: str, tmp_path: Path) -> None:
    from tests.support.faults import org_with_endpoint, publish
    from tests.support.server import running_server

    with running_receiver() as rx, running_server(database_url) as srv:  # API only
        org_id, keys = org_with_endpoint(srv.engine, database_url, rx.url("/w"))
        settings = {"EVENT_LOOP": "uvloop", "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
        with worker_process(database_url, tmp_path, settings) as worker:
            (line,) = _loop_lines(worker.log())
            assert (line["command"], line["event_loop"]) == ("worker", "uvloop")
            publish(srv.target, keys["events:publish"], org_id, ["one"])
            (got,) = rx.wait_for(1, "/w", timeout=15)
            assert got.headers["webhook-id"] == "one"
            assert worker.terminate() == 0
        assert "Traceback" not in worker.log()

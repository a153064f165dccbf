"""Metrics, gRPC health and structured logs of a running service.

* ``webhooks serve`` (the real ``serve()`` coroutine, in a thread) against a
  real receiver: 2 OK, 1 400, 1 500-then-OK with a tiny retry schedule; then
  the metrics HTTP endpoint is scraped and the counters checked exactly.
* The queue gauges after publishing with no worker running.
* gRPC health follows the database: PostgreSQL behind a TCP proxy that the
  test cuts and restores (NOT_SERVING, then SERVING again).
* JSON log lines of delivery attempts carry the ids and never the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Reply, running_receiver
from tests.support.server import make_org_and_keys, running_server
from tests.support.server import test_settings as make_settings
from webhooks_client import AdminClient, PublisherClient
from webhooks_service.commands.serve import serve
from webhooks_service.observability import health as health_module
from webhooks_service.observability.logging import ATTEMPT_LOGGER, JsonFormatter
from webhooks_service.observability.metrics import Metrics, run_queue_gauges
from webhooks_service.storage import db
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.queue_stats import queue_stats


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(database_url: str, **overrides: Any) -> Iterator[str]:
    """``serve()`` (API + worker + metrics) in a thread; yields the gRPC target."""
    settings = make_settings(database_url, overrides)
    engine = db.create_engine(database_url)
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()

    def on_ready(target: str) -> None:
        ready.set_result(target)

    async def main() -> int:
        return await serve(settings, engine, stop=stop, on_ready=on_ready)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    try:
        target = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(30)
        yield target
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        engine.dispose()


async def _wait(future: asyncio.Future[str]) -> str:
    return await future


def scrape(port: int) -> dict[str, float]:
    """``GET /metrics`` -> {"name{label=value}": value} (labels sorted)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


@pytest.fixture
def attempt_log() -> Iterator[io.StringIO]:
    """The per-attempt log lines, as JSON, at DEBUG (successes included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ATTEMPT_LOGGER)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_metrics_after_a_known_sequence_and_json_attempt_lines(
    database_url: str, attempt_log: io.StringIO
) -> None:
    port = _free_port()
    with (
        running_receiver() as rx,
        serving(
            database_url, retry_schedule=(0.05, 0.05), metrics_listen=f"127.0.0.1:{port}"
        ) as target,
    ):
        rx.program("/bad", Reply(400))
        rx.program("/flaky", Reply(500), Reply(200))
        engine = db.create_engine(database_url)
        org_id, keys = make_org_and_keys(engine)
        engine.dispose()
        with (
            AdminClient(target, keys["all"]) as admin,
            PublisherClient(target, keys["events:publish"]) as pub,
        ):
            secret = admin.put_webhook_config(url=rx.url("/ok"), event_types=["reward.*"]).secret
            admin.put_webhook_config(url=rx.url("/bad"), event_types=["user.*"])
            flaky = admin.put_webhook_config(url=rx.url("/flaky"), event_types=["challenge.*"])
            pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="ok-1")
            pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="ok-2")
            pub.publish_event(
                org_id, "user.authenticated", example("user.authenticated"), id="bad-1"
            )
            pub.publish_event(
                org_id, "challenge.started", example("challenge.started"), id="flaky-1"
            )
            rx.wait_for(2, "/flaky")
            m = eventually(
                lambda: (
                    (s := scrape(port))["webhooks_delivery_attempts_total{outcome=delivered}"] == 3
                    and s
                ),
                what="3 delivered attempts in the metrics",
            )
    assert m["webhooks_delivery_attempts_total{outcome=delivered}"] == 3
    assert m["webhooks_delivery_attempts_total{outcome=failed}"] == 1
    assert m["webhooks_delivery_attempts_total{outcome=retry_scheduled}"] == 1
    assert m["webhooks_delivery_attempts_total{outcome=dead}"] == 0
    assert m["webhooks_delivery_attempt_duration_seconds_count"] == 5
    assert m["webhooks_deliveries_claimed_total"] == 5
    assert "webhooks_queue_pending_deliveries" in m
    assert "webhooks_queue_oldest_due_age_seconds" in m
    assert m["process_cpu_seconds_total"] > 0  # the standard process and Python series
    assert any(k.startswith("python_info{") for k in m)

    lines = [json.loads(line) for line in attempt_log.getvalue().splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert line["delivery_id"].startswith("dlv_") and line["attempt"] >= 1
        assert line["config_id"].startswith("whc_") and line["event_id"]
    flaky_lines = sorted(
        (x for x in lines if x["config_id"] == flaky.config.id), key=lambda x: x["attempt"]
    )
    assert [(x["attempt"], x["outcome"], x["level"]) for x in flaky_lines] == [
        (1, "retry_scheduled", "INFO"),
        (2, "delivered", "DEBUG"),
    ]
    bad = next(x for x in lines if x["event_id"] == "bad-1")
    assert (bad["outcome"], bad["status_code"], bad["level"]) == ("failed", 400, "WARNING")
    text = attempt_log.getvalue()
    assert '"points"' not in text and secret not in text  # no bodies, no secrets


def test_queue_gauges(database_url: str) -> None:
    with running_receiver() as rx, running_server(database_url) as srv:  # no worker
        org_id, keys = make_org_and_keys(srv.engine)
        with (
            AdminClient(srv.target, keys["all"]) as admin,
            PublisherClient(srv.target, keys["events:publish"]) as pub,
        ):
            admin.put_webhook_config(url=rx.url("/a"), event_types=["*"])
            admin.put_webhook_config(url=rx.url("/b"), event_types=["reward.*"])
            pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="e1")
            pub.publish_event(org_id, "user.authenticated", example("user.authenticated"), id="e2")
        later = utcnow() + timedelta(seconds=30)
        stats = queue_stats(srv.engine, later)
        assert (stats.pending, stats.due) == (3, 3)
        assert 30 <= stats.oldest_due_age_seconds < 60
        assert queue_stats(srv.engine, utcnow() - timedelta(hours=1)).due == 0

        metrics = Metrics()

        async def refresh_once() -> None:
            stop = asyncio.Event()

            def clock() -> datetime:
                stop.set()  # one refresh, then the task ends
                return later

            await run_queue_gauges(metrics, srv.engine, stop, 60, clock=clock)

        asyncio.run(asyncio.wait_for(refresh_once(), 10))
        assert metrics.registry.get_sample_value("webhooks_queue_pending_deliveries") == 3
        assert metrics.registry.get_sample_value("webhooks_queue_due_deliveries") == 3
        age = metrics.registry.get_sample_value("webhooks_queue_oldest_due_age_seconds")
        assert age is not None and 30 <= age < 60


# -- health follows the database -------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> -> upstream; ``cut()`` drops every connection and stops
    listening (connections are refused), ``restore()`` listens on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        for s in [*conns, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                # cut() may have run since accept(): it could not see this pair, so it
                # would have stayed open through the cut (a pooled connection that still
                # reached the database: SERVING for good, a flaky failure under -n 3).
                live = self._listener is listener
                if live:
                    self._conns += [client, server]
            if not live:
                for s in (client, server):
                    s.close()
                return
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def test_health_follows_database_reachability(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_module, "PROBE_INTERVAL_SECONDS", 0.1)
    monkeypatch.setattr(health_module, "PROBE_TIMEOUT_SECONDS", 2.0)
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.restore()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = db.create_engine(via_proxy, connect_args={"connect_timeout": 2})
    services = ("", "webhooks.v1.WebhookAdmin", "webhooks.v1.EventPublisher")
    try:
        with (
            running_server(via_proxy, engine=engine) as srv,
            grpc.insecure_channel(srv.target) as channel,
        ):
            stub = health_pb2_grpc.HealthStub(channel)

            def statuses() -> set[int]:
                return {
                    stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status
                    for s in services
                }

            serving = {health_pb2.HealthCheckResponse.SERVING}
            not_serving = {health_pb2.HealthCheckResponse.NOT_SERVING}
            assert statuses() == serving
            proxy.cut()
            eventually(lambda: statuses() == not_serving, what="NOT_SERVING")
            proxy.restore()
            eventually(lambda: statuses() == serving, what="SERVING again")
    finally:
        proxy.cut()
        engine.dispose()


def test_log_format_setting() -> None:
    from webhooks_service.config import Settings
    from webhooks_service.errors import ConfigurationError

    assert Settings().log_format == "auto" and Settings().metrics_listen == "127.0.0.1:9464"
    assert Settings.load(env={"WEBHOOKS_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigurationError):
        Settings.load(env={"WEBHOOKS_LOG_FORMAT": "xml"})
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.config_id = "whc_1"
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["level"], line["config_id"]) == ("hello you", "INFO", "whc_1")


def test_worker_command_serves_metrics_and_logs_json(database_url: str) -> None:
    """``webhooks worker`` wiring: --metrics-listen and json log lines on stderr."""
    import os
    import signal
    import subprocess
    import sys

    port = _free_port()
    env = {
        **os.environ,
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_POLL_INTERVAL": "0.1",
        "WEBHOOKS_RETRY_SCHEDULE": "60",
        "WEBHOOKS_LOG_LEVEL": "INFO",
    }
    webhooks = os.path.join(os.path.dirname(sys.executable), "webhooks")
    args = [webhooks, "worker", "--log-format", "json", "--metrics-listen", f"127.0.0.1:{port}"]
    lines: list[str] = []
    with running_receiver() as rx, running_server(database_url) as srv:  # API only
        rx.program("/down", Reply(503))
        org_id, keys = make_org_and_keys(srv.engine)
        with AdminClient(srv.target, keys["all"]) as admin:
            config = admin.put_webhook_config(url=rx.url("/down"), event_types=["*"]).config
        proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr
        assert stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(stderr), daemon=True)
        reader.start()
        try:
            with PublisherClient(srv.target, keys["events:publish"]) as pub:
                pub.publish_event(org_id, "reward.claimed", example("reward.claimed"), id="w-1")
            rx.wait_for(1, "/down")
            key = "webhooks_delivery_attempts_total{outcome=retry_scheduled}"
            eventually(lambda: _scrape_or_empty(port).get(key) == 1, what="the worker's metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            reader.join(5)
    assert code == 0
    records = [json.loads(x) for x in lines if x.startswith("{")]
    attempt = next(r for r in records if r["logger"] == ATTEMPT_LOGGER)
    assert (attempt["event_id"], attempt["config_id"], attempt["attempt"]) == (
        "w-1",
        config.id,
        1,
    )
    assert attempt["level"] == "INFO" and attempt["status_code"] == 503


def _scrape_or_empty(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except httpx.HTTPError:
        return {}

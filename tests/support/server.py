"""An in-process API server for tests, on a free port, against a real database.

The ``grpc.aio`` server needs an event loop; tests are synchronous and use the
synchronous client, so the server runs in a background thread with its own
loop. :func:`running_server` starts it (the very code ``webhooks serve``
runs: ``webhooks_service.api.server.start_server``) and stops it on exit.

    with running_server(database_url) as srv:
        org_id, keys = make_org_and_keys(srv.engine)
        client = AdminClient(srv.target, keys["webhooks:read"])

``worker=True`` also runs the delivery worker in the server's loop, once
``webhooks_service.delivery.runner`` exists (skips the test otherwise).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from tests.support.polling import eventually
from webhooks_service.api.server import ApiServer, start_server
from webhooks_service.config import Settings
from webhooks_service.core import keys, orgs
from webhooks_service.delivery.handoff import LocalWorker
from webhooks_service.delivery.worker import DeliveryWorker
from webhooks_service.storage import db

T = TypeVar("T")

ALL_SCOPES: tuple[str, ...] = keys.SCOPES
TEST_ALLOWED_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
TEST_GATEWAY_SECRET = "test-gateway-secret-0123456789abcdef"
"""What tests/support/envoy.py's gateway tells these servers (api/throttle.py)."""


@dataclass
class RunningServer:
    """A started server: ``target`` ("127.0.0.1:PORT") is what clients dial."""

    target: str
    port: int
    settings: Settings
    engine: Engine
    loop: asyncio.AbstractEventLoop
    api: ApiServer
    wakeup: asyncio.Event
    stop_event: asyncio.Event
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    local: LocalWorker | None = None

    @property
    def worker(self) -> DeliveryWorker:
        """The delivery worker running in this server (``worker=True``)."""
        assert self.local is not None, "running_server(..., worker=True) runs a worker"
        eventually(lambda: self.local is not None and self.local.worker, 15, "the worker to run")
        worker = self.local.worker
        assert isinstance(worker, DeliveryWorker)
        return worker

    def claimed_after(self, timeout: float = 15.0) -> None:
        """Until a claim that began after this call came back (``DeliveryWorker.claims``,
        poking the loop meanwhile): whatever was due when called has been claimed."""
        worker = self.worker
        start = worker.claims

        def claimed_since() -> bool:
            if worker.claims >= start + 2:  # start + 1 may have begun before the call
                return True
            self.loop.call_soon_threadsafe(self.wakeup.set)  # a poke: claim now
            return False

        eventually(claimed_since, timeout, "a claim after the call")

    def quiet(self, timeout: float = 15.0) -> None:
        """:meth:`claimed_after`, then until the worker is idle (nothing in flight or
        waiting to start): nothing more happens unless something new is published.
        "Nothing more happens" is checked against this, not by sleeping."""
        self.claimed_after(timeout)
        eventually(lambda: self.worker.idle, timeout, "the worker to be idle")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def test_settings(database_url: str, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings for tests: port 0, loopback targets allowed, then ``overrides``
    (already-parsed values, e.g. ``{"retry_schedule": (0.1, 0.2)}``)."""
    base = Settings(
        database_url=database_url,
        grpc_listen="127.0.0.1:0",
        allowed_target_networks=TEST_ALLOWED_NETWORKS,
        # Tests poll the API fast with one key; rate-limit tests opt in.
        rate_limit_per_second=0.0,
        auth_failure_per_second=0.0,
        gateway_secret=TEST_GATEWAY_SECRET,
    )
    return dataclasses.replace(base, **dict(overrides or {}))


@contextmanager
def running_server(
    database_url: str,
    settings_overrides: Mapping[str, Any] | None = None,
    *,
    worker: bool = False,
    engine: Engine | None = None,
    wall_clock: Callable[[], datetime] | None = None,
) -> Iterator[RunningServer]:
    """Start the API server (and optionally the worker); stop both on exit.

    The database must already be migrated (the ``database_url`` fixture is).
    Pass ``engine`` to share one; otherwise one is created and disposed here.
    """
    settings = test_settings(database_url, settings_overrides)
    own_engine = engine is None
    eng = engine if engine is not None else db.create_engine(database_url)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-grpc-server", daemon=True)
    thread.start()

    async def start() -> RunningServer:
        runner = importlib.import_module("webhooks_service.delivery.runner")
        local = runner.LocalWorker()  # publish wakes / hands over to the worker, like serve
        wakeup = local.wakeup
        stop_event = asyncio.Event()
        api = await start_server(
            settings,
            eng,
            notify=wakeup.set,
            lend=local.lend,
            wall_clock=wall_clock,
            stopped=local.stop_config,
        )
        srv = RunningServer(api.target, api.port, settings, eng, loop, api, wakeup, stop_event)
        if worker:
            srv.local = local
            # Same loop, like `webhooks serve`.
            srv.tasks.append(
                asyncio.create_task(
                    runner.run_worker(settings, eng, stop_event, wakeup=wakeup, local=local)
                )
            )
        return srv

    async def stop(srv: RunningServer) -> None:
        srv.stop_event.set()
        for task in srv.tasks:
            try:
                await asyncio.wait_for(task, timeout=15)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        await srv.api.stop(grace=1.0)

    srv: RunningServer | None = None
    try:
        future: Future[RunningServer] = asyncio.run_coroutine_threadsafe(start(), loop)
        srv = future.result(30)
        yield srv
    finally:
        if srv is not None:
            asyncio.run_coroutine_threadsafe(stop(srv), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        if own_engine:
            eng.dispose()


def make_org(engine: Engine, name: str = "Acme") -> str:
    return orgs.create_org(engine, name).id


def make_key(engine: Engine, org_id: str | None, *scopes: str) -> str:
    """A whole API key (``whk_…``) of ``org_id`` with ``scopes``; None: a platform key."""
    if org_id is None:
        return keys.create_platform_key(engine)[1]
    return keys.create_key(engine, org_id, scopes)[1]


def make_org_and_keys(engine: Engine, name: str = "Acme") -> tuple[str, dict[str, str]]:
    """A new organisation and one key per scope, plus ``"all"`` (every scope)
    and ``"platform"`` (a platform publish key, no organisation)."""
    org_id = make_org(engine, name)
    result = {scope: make_key(engine, org_id, scope) for scope in ALL_SCOPES}
    result["all"] = make_key(engine, org_id, *ALL_SCOPES)
    result["platform"] = make_key(engine, None)
    return org_id, result

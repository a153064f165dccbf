"""One organisation, a real receiver and the real server with its worker:
the setting of the end-to-end delivery tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks_client import AdminClient, DeliveryLog, PublisherClient, PublishResult, WebhookConfig
from webhooks_service.domain import utcnow
from webhooks_service.storage.queue_stats import queue_stats


class DeliveryEnv:
    """Clients of one organisation ("all" scopes and events:publish) on ``srv``."""

    def __init__(self, srv: RunningServer, rx: Receiver) -> None:
        self.srv = srv
        self.rx = rx
        self.org_id, self.keys = make_org_and_keys(srv.engine)
        self.admin = AdminClient(srv.target, self.keys["all"])
        self.publisher = PublisherClient(srv.target, self.keys["events:publish"])

    def config(
        self, path: str, types: Sequence[str] = ("*",), url: str = ""
    ) -> tuple[WebhookConfig, str]:
        """A new config for the receiver's ``path`` (or ``url``): (config, secret)."""
        response = self.admin.put_webhook_config(
            url=url or self.rx.url(path), event_types=list(types)
        )
        return response.config, response.secret

    def publish(self, type_: str = "reward.claimed", id: str | None = None) -> PublishResult:
        return self.publisher.publish_event(self.org_id, type_, example(type_), id=id)

    def logs(self, **filters: Any) -> list[DeliveryLog]:
        return list(self.admin.iter_delivery_logs(**filters))

    def wait_logs(self, count: int, timeout: float = 15.0, **filters: Any) -> list[DeliveryLog]:
        """At least ``count`` log entries matching ``filters`` (newest first)."""

        def enough() -> list[DeliveryLog] | None:
            logs = self.logs(**filters)
            return logs if len(logs) >= count else None

        return eventually(enough, timeout, f"{count} log entries matching {filters}")

    def settled(self, timeout: float = 15.0) -> None:
        """Until nothing is pending in the queue: the service's own count behind
        the ``webhooks_queue_pending_deliveries`` gauge (``storage.queue_stats``).
        A delivery due, claimed, in flight or waiting for a retry is pending, so
        once it is 0 no further attempt can happen: "nothing more happens" is
        checked against this, not by sleeping."""
        eventually(
            lambda: queue_stats(self.srv.engine, utcnow()).pending == 0,
            timeout,
            "nothing pending in the queue",
        )

    def close(self) -> None:
        self.admin.close()
        self.publisher.close()


@contextmanager
def delivery_env(database_url: str, overrides: Mapping[str, Any]) -> Iterator[DeliveryEnv]:
    with running_receiver() as rx, running_server(database_url, overrides, worker=True) as srv:
        env = DeliveryEnv(srv, rx)
        try:
            yield env
        finally:
            env.close()


@contextmanager
def rest_delivery_env(
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    overrides: Mapping[str, Any],
) -> Iterator[tuple[DeliveryEnv, str]]:
    """:func:`delivery_env` on a copy of the migrated SQLite template, behind a real
    Envoy: (the environment, the gateway's base URL). For module-scoped REST fixtures."""
    path = tmp_path_factory.mktemp(name) / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    with (
        running_receiver() as rx,
        running_server(f"sqlite:///{path}", overrides, worker=True) as srv,
        running_gateway([srv.target]) as gw,
    ):
        env = DeliveryEnv(srv, rx)
        try:
            yield env, gw.base_url
        finally:
            env.close()

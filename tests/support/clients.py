"""Run the same client tests against the blocking and the asyncio clients.

``Blocking(AsyncAdminClient, target, key)`` drives an asyncio client from
synchronous test code: the client lives in an event loop on its own thread
(grpc.aio channels belong to the loop that made them) and each method call
runs there to completion; async iterators come back as plain iterators. So a
test written against ``AdminClient`` runs unchanged against
``AsyncAdminClient`` through the ``admin_client`` / ``publisher_client``
factories below, parametrised over both kinds.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from webhooks_client import AdminClient, AsyncAdminClient, AsyncPublisherClient, PublisherClient

KINDS = ("sync", "asyncio")


class Blocking:
    """A blocking facade over an asyncio client (same methods, same errors)."""

    def __init__(self, cls: type[Any], *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> Any:
            return cls(*args, **kwargs)

        self._client = self._run(make())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if inspect.isasyncgenfunction(method):

            def collect(*args: Any, **kwargs: Any) -> Iterator[Any]:
                async def drain() -> list[Any]:
                    return [item async for item in method(*args, **kwargs)]

                return iter(self._run(drain()))

            return collect
        if inspect.iscoroutinefunction(method):
            return lambda *args, **kwargs: self._run(method(*args, **kwargs))
        return method

    def close(self) -> None:
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ClientFactory = Callable[..., Any]


@pytest.fixture(params=KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def admin_client(client_kind: str) -> ClientFactory:
    """``admin_client(target, key, **kwargs)``: an AdminClient, or an AsyncAdminClient
    behind :class:`Blocking`."""
    if client_kind == "sync":
        return AdminClient
    return lambda *args, **kwargs: Blocking(AsyncAdminClient, *args, **kwargs)


@pytest.fixture
def publisher_client(client_kind: str) -> ClientFactory:
    if client_kind == "sync":
        return PublisherClient
    return lambda *args, **kwargs: Blocking(AsyncPublisherClient, *args, **kwargs)

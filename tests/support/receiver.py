"""A real HTTP receiver for tests: aiohttp on 127.0.0.1, a port the OS picks.

It records every request (headers, exact body, arrival time) and answers
what the test programmed per path: a sequence of ``Reply`` values consumed
one per request, the last one repeating (default: 200). ``Reply(hang=True)``
accepts the request and never answers (a hanging endpoint).

    with running_receiver() as rx:
        rx.program("/flaky", Reply(500), Reply(500), Reply(200))
        url = rx.url("/flaky")
        ...
        got = rx.wait_for(1, path="/flaky")

The server runs in a background thread with its own event loop, so
synchronous tests and an in-process gRPC server can use it alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float  # time.time() on arrival


class Receiver:
    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._replies: dict[str, list[Reply]] = {}
        self._responders: dict[str, Callable[[Received], Reply]] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    # -- programming and reading (any thread) --------------------------------

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def program(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with ``replies`` in turn; the last repeats."""
        with self._lock:
            self._replies[path] = list(replies) or [Reply()]

    def respond(self, path: str, responder: Callable[[Received], Reply] | None) -> None:
        """Answer requests to ``path`` with ``responder(request)`` (None: stop)."""
        with self._lock:
            if responder is None:
                self._responders.pop(path, None)
            else:
                self._responders[path] = responder

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.requests(path))

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 15.0
    ) -> list[Received]:
        """Block until at least ``count`` requests (to ``path``) arrived; AssertionError if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._received if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver: expected {count} requests to {path or 'any path'}, "
                        f"got {len(got)} within {timeout} s"
                    )
                self._cond.wait(left)

    # -- serving ------------------------------------------------------------------

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            replies = self._replies.get(path)
            if not replies:
                return Reply()
            return replies.pop(0) if len(replies) > 1 else replies[0]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = Received(
            request.path, {k.lower(): v for k, v in request.headers.items()}, body, time.time()
        )
        with self._cond:
            self._received.append(received)
            self._cond.notify_all()
            responder = self._responders.get(request.path)
        reply = responder(received) if responder else self._next_reply(request.path)
        if reply.hang:
            await asyncio.Event().wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """Start a Receiver in a background thread; stop it on exit."""
    rx = Receiver()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-receiver", daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", rx.handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await runner.setup()
        site = web.TCPSite(runner, rx.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        rx.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield rx
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()

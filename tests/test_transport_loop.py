"""The transport's own drive of libcurl on the event loop (``delivery/curl_loop.py``).

curl stops watching a connection when its transfer ends and it goes back to
the pool; the transport leaves the socket in its epoll set meanwhile and
watches it again on reuse. These check the cases around that: one connection
carrying many requests, an endpoint closing its idle connections (the socket
is closed and its number reused by the next connection), a transfer cancelled
mid-way, and curl's timeout firing through the one loop timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from webhooks_service.config import Settings
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import ErrorKind

LOOPBACK = Settings(allowed_target_networks=("127.0.0.0/8",))
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-n: %d\r\n\r\nok"


class Endpoint:
    """Keep-alive HTTP/1.1 on 127.0.0.1: answers each request (bodies by
    content-length), optionally closing the connection after each answer
    (without saying so: curl finds out while the connection is idle) or
    never answering."""

    def __init__(self, *, close_after: bool = False, hang: bool = False) -> None:
        self.close_after = close_after
        self.hang = hang
        self.connections = 0
        self.requests = 0
        self.got_request = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests += 1
                self.got_request.set()
                if self.hang:
                    await reader.read()  # until the client gives up
                    return
                writer.write(OK % self.requests)
                await writer.drain()
                if self.close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def serving(endpoint: Endpoint) -> AsyncIterator[str]:
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


def test_one_connection_carries_many_requests() -> None:
    async def run() -> tuple[list[int], Endpoint]:
        endpoint = Endpoint()
        async with serving(endpoint) as url, Transport(LOOPBACK) as transport:
            statuses = [(await transport.post(url, b"{}", {})).status_code for _ in range(30)]
        return statuses, endpoint

    statuses, endpoint = asyncio.run(run())
    assert statuses == [200] * 30
    assert endpoint.connections == 1


def test_concurrent_requests_share_the_pooled_connections() -> None:
    async def run() -> tuple[list[int], Endpoint]:
        endpoint = Endpoint()
        async with serving(endpoint) as url, Transport(LOOPBACK) as transport:
            statuses: list[int] = []
            for _ in range(3):
                results = await asyncio.gather(*(transport.post(url, b"{}", {}) for _ in range(20)))
                statuses += [r.status_code for r in results]
        return statuses, endpoint

    statuses, endpoint = asyncio.run(run())
    assert statuses == [200] * 60
    assert endpoint.connections <= 20


def test_an_endpoint_closing_idle_connections_is_reached_on_new_ones() -> None:
    async def run() -> tuple[list[tuple[int, tuple[tuple[str, str], ...]]], Endpoint]:
        endpoint = Endpoint(close_after=True)
        async with serving(endpoint) as url, Transport(LOOPBACK) as transport:
            seen = []
            for _ in range(20):
                result = await transport.post(url, b"{}", {})
                seen.append((result.status_code, result.response_headers))
                await endpoint_closed(endpoint)
        return seen, endpoint

    async def endpoint_closed(_endpoint: Endpoint) -> None:
        for _ in range(3):  # a few loop turns: the close reaches the idle socket
            await asyncio.sleep(0)

    seen, endpoint = asyncio.run(run())
    assert [status for status, _ in seen] == [200] * 20
    assert [dict(headers)["x-n"] for _, headers in seen] == [str(n) for n in range(1, 21)]
    assert endpoint.connections == 20


def test_a_cancelled_transfer_leaves_the_transport_working() -> None:
    async def run() -> tuple[int, int]:
        hanging, answering = Endpoint(hang=True), Endpoint()
        async with (
            serving(hanging) as slow,
            serving(answering) as fast,
            Transport(LOOPBACK) as transport,
        ):
            task = asyncio.create_task(transport.post(slow, b"{}", {}))
            await hanging.got_request.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            result = await transport.post(fast, b"{}", {})
        return result.status_code, answering.requests

    assert asyncio.run(run()) == (200, 1)


def test_curls_timeout_fires_through_the_loop_timer() -> None:
    async def run() -> tuple[ErrorKind | None, str, float]:
        endpoint = Endpoint(hang=True)
        async with serving(endpoint) as url, Transport(LOOPBACK) as transport:
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await transport.post(url, b"{}", {}, attempt_timeout=0.3)
            return result.error_kind, result.error, loop.time() - started

    kind, error, took = asyncio.run(run())
    assert kind is ErrorKind.TIMEOUT
    assert error == "timeout: no complete response within 0.3 s"
    assert 0.29 <= took < 2.0

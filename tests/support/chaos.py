"""A hostile webhook endpoint for the fault suite: raw asyncio sockets, no HTTP library.

Each request gets a *mode*, chosen by a ``plan(event_id, n)`` callable (``n``:
how many requests for that ``webhook-id`` came before), so a seeded plan
replays the same chaos whatever the arrival order:

* ``ok`` — 200; ``slow`` — 200 after ``slow_seconds``; ``error500`` — 500;
  ``throttle429`` — 429 with ``Retry-After``;
* ``reset`` — the start of a 200 response, then a TCP reset (SO_LINGER 0);
* ``hang`` — never answers; waits until the client gives up and closes;
* ``huge`` — 200 announcing and streaming a 50 MB body until the client hangs up;
* ``garbage`` — bytes that are not HTTP, then close;
* ``redirect`` — 302 to ``location``.

Every request is recorded as a :class:`Hit` (event id, mode, arrival and end
time), so tests compare what the endpoint saw with the attempts the service
logged, and find overlapping attempts of one event (a delivery claimed twice
at once). Answers always carry ``Connection: close``: one request per
connection, so every attempt the worker makes is a request the endpoint sees.

    with running_chaos(seeded_plan(7)) as rx:
        url = rx.url("/hook")
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MODES = ("ok", "error500", "throttle429", "reset", "hang", "huge", "garbage")
SUCCESS_MODES = frozenset({"ok", "slow", "huge"})  # a 2xx status line reaches the client
HUGE_BYTES = 50 * 1024 * 1024
CHUNK = b"x" * 65536

Plan = Callable[[str, int], str]


@dataclass
class Hit:
    event_id: str
    mode: str
    n: int  # 0 for the first request of this event id
    arrived: float  # time.time() when the whole request was read
    ended: float = 0.0  # when the answer was finished (or the connection dropped)
    sent: int = 0  # body bytes written (``huge``)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names


def seeded_plan(seed: int, weights: dict[str, float] | None = None) -> Plan:
    """A reproducible random mix of modes, one independent draw per (event, n)."""
    table = weights or {
        "ok": 3,
        "error500": 2,
        "throttle429": 1,
        "reset": 1,
        "hang": 0.5,
        "huge": 0.5,
        "garbage": 1,
    }
    names, w = list(table), list(table.values())

    def plan(event_id: str, n: int) -> str:
        return random.Random(f"{seed}:{event_id}:{n}").choices(names, w)[0]

    return plan


class ChaosReceiver:
    def __init__(
        self,
        plan: Plan,
        *,
        retry_after: int = 1,
        hang_cap: float = 60.0,
        slow_seconds: float = 1.0,
        host: str = "127.0.0.1",
        location: str = "",
    ) -> None:
        self.plan = plan
        self.location = location
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.hang_cap = hang_cap
        self.host = host
        self.port = 0
        self.hits: list[Hit] = []
        self.connections = 0
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def by_event(self) -> dict[str, list[Hit]]:
        out: dict[str, list[Hit]] = {}
        for h in self.snapshot():
            out.setdefault(h.event_id, []).append(h)
        for hits in out.values():
            hits.sort(key=lambda h: h.n)
        return out

    # -- serving ------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        hit: Hit | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get("content-length", "0")))
            event_id = headers.get("webhook-id", "")
            with self._lock:
                n = self._counts[event_id]
                self._counts[event_id] += 1
                hit = Hit(event_id, self.plan(event_id, n), n, time.time(), headers=headers)
                self.hits.append(hit)
            await self._answer(hit, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            if hit is not None:
                hit.ended = time.time()
            if not writer.transport.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, hit: Hit, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        mode = hit.mode
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
            mode = "ok"
        if mode == "hang":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hang_cap):
                    await reader.read()  # EOF when the client gives up
            return
        if mode == "garbage":
            writer.write(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
            await writer.drain()
            return
        if mode == "reset":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # close with linger 0: RST
            return
        if mode == "huge":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % HUGE_BYTES
            )
            while hit.sent < HUGE_BYTES:
                writer.write(CHUNK)
                await writer.drain()  # raises once the client has hung up
                hit.sent += len(CHUNK)
            return
        status, extra, body = {
            "ok": (b"200 OK", b"", b"ok"),
            "redirect": (b"302 Found", b"Location: %s\r\n" % self.location.encode(), b""),
            "error500": (b"500 Internal Server Error", b"", b"boom"),
            "throttle429": (
                b"429 Too Many Requests",
                b"Retry-After: %d\r\n" % self.retry_after,
                b"slow down",
            ),
        }[mode]
        writer.write(
            b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, extra, len(body), body)
        )
        await writer.drain()


@contextmanager
def running_chaos(
    plan: Plan,
    *,
    retry_after: int = 1,
    hang_cap: float = 60.0,
    slow_seconds: float = 1.0,
    host: str = "127.0.0.1",
    location: str = "",
    also_ipv6: bool = False,
) -> Iterator[ChaosReceiver]:
    """A ChaosReceiver on ``host``:<free port> in a background thread
    (``also_ipv6``: on [::1] with the same port as well)."""
    rx = ChaosReceiver(
        plan,
        retry_after=retry_after,
        hang_cap=hang_cap,
        slow_seconds=slow_seconds,
        host=host,
        location=location,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="chaos-receiver", daemon=True)
    thread.start()

    async def start() -> list[asyncio.Server]:
        server = await asyncio.start_server(rx.handle, rx.host, 0, limit=1 << 20, backlog=1024)
        rx.port = server.sockets[0].getsockname()[1]
        servers = [server]
        if also_ipv6:
            servers.append(await asyncio.start_server(rx.handle, "::1", rx.port))
        return servers

    async def stop(servers: list[asyncio.Server]) -> None:
        for server in servers:
            server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield rx
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()

"""libcurl's multi-socket API on the running event loop, for the transport.

``CurlLoop`` is the glue between one ``pycurl.CurlMulti`` and the asyncio (or
uvloop) loop that ``delivery/http.py`` runs its transfers on: it watches the
sockets curl names, runs curl's timeout when it is due, and resolves a future
per transfer. It replaced pycurl's own ``pycurl.async_multi.AsyncCurlMulti``,
which does the same with a loop watcher added and removed per request (curl
stops watching a pooled connection between transfers) and a loop timer
cancelled and remade about twice per request: see docs/decisions.md, "CPU
per delivery (issue 25): the transport's own work", for the figures. It does
no HTTP: requests, responses, connections and TLS are libcurl's.

Linux only (``select.epoll``), as the service is.
"""

from __future__ import annotations

import asyncio
import contextlib
import select

import pycurl

# curl's timeout is run when the loop's clock is this close to it (the loop's
# timers may fire a little early; curl runs only what is due and sets the rest)
_TIMER_SLACK = 0.001
# curl's POLL_IN / POLL_OUT / POLL_INOUT as epoll events; what counts as readable
_EPOLL_EVENTS = {
    pycurl.POLL_IN: select.EPOLLIN,
    pycurl.POLL_OUT: select.EPOLLOUT,
    pycurl.POLL_INOUT: select.EPOLLIN | select.EPOLLOUT,
}
_READABLE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLPRI


class CurlLoop:
    """libcurl's multi-socket API on the running event loop.

    Sockets: curl says which of its sockets to watch for what
    (``M_SOCKETFUNCTION``); they are watched in one epoll set of our own, whose
    descriptor the loop watches (one ``add_reader`` for the transport's life).
    curl stops watching a connection when its transfer ends and it goes back
    to the pool, and watches it again when the next transfer reuses it: the
    pooled socket stays in the set meanwhile (no syscall), and is taken out
    only if it becomes ready while idle (the endpoint closed it). The kernel
    drops a closed socket from the set by itself, so a socket curl watches
    again is ``modify``-ed, and ``register``-ed when that says it is not there
    (a new socket with a reused number). Per request that is one
    ``epoll_ctl`` instead of the loop's add/remove of a watcher (four, and a
    watcher object, with uvloop).

    Timers: curl says when it next needs a timeout run (``M_TIMERFUNCTION``);
    that is a deadline, and one loop timer is armed only when the deadline
    comes before the armed one; one that fires early is re-armed (curl moves
    its deadline on every transfer: a float, not a timer handle, each time).

    A readiness or the timer drives ``socket_action``; when fewer transfers
    run than were started the finished ones are collected (``info_read``). A
    transfer is a future resolved with None or curl's ``(code, message)``:
    failures are values here, the transport maps them to results."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.multi = m = pycurl.CurlMulti()
        self.waiting: dict[pycurl.Curl, asyncio.Future[tuple[int, str] | None]] = {}
        self.epoll = select.epoll()
        self.wanted: dict[int, int] = {}  # fd -> the epoll events curl wants now (0: idle)
        self.deadline: float | None = None  # loop time curl wants its timeout run
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.soon = False  # a run "now" is scheduled (call_soon)
        self.closed = False
        m.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        m.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.loop.add_reader(self.epoll.fileno(), self._ready)

    def start(self, curl: pycurl.Curl) -> asyncio.Future[tuple[int, str] | None]:
        future = self.loop.create_future()
        self.multi.add_handle(curl)  # curl asks for a timeout run to start it
        self.waiting[curl] = future
        return future

    def cancel(self, curl: pycurl.Curl) -> None:
        """Stop ``curl``'s transfer (its task was cancelled)."""
        if self.waiting.pop(curl, None) is not None:
            self.multi.remove_handle(curl)

    def close(self) -> None:
        self.closed = True  # what curl asks from here on (closing its pool) is ignored
        for curl, future in list(self.waiting.items()):
            self.multi.remove_handle(curl)
            future.cancel()
        self.waiting.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.multi.close()
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()

    def _on_socket(self, what: int, fd: int, _multi: object, _socketp: object) -> None:
        if self.closed:
            return
        if what == pycurl.POLL_REMOVE or what == pycurl.POLL_NONE:
            if fd in self.wanted:
                self.wanted[fd] = 0  # left in the set until it is ready or closed
            return
        events = _EPOLL_EVENTS[what]
        before = self.wanted.get(fd)
        self.wanted[fd] = events
        if before is None:
            self._register(fd, events)
        elif before != events:  # from idle (0): curl may have closed it since
            try:
                self.epoll.modify(fd, events)
            except FileNotFoundError:
                self._register(fd, events)

    def _register(self, fd: int, events: int) -> None:
        try:
            self.epoll.register(fd, events)
        except FileExistsError:
            self.epoll.modify(fd, events)

    def _ready(self) -> None:
        """The set has ready sockets: hand each to curl (idle ones leave the set)."""
        wanted, act = self.wanted, self.multi.socket_action
        running = -1
        try:
            for fd, events in self.epoll.poll(0):
                if not wanted.get(fd):  # idle in the pool: the endpoint closed it, say
                    wanted.pop(fd, None)
                    with contextlib.suppress(OSError):
                        self.epoll.unregister(fd)
                    continue
                mask = pycurl.CSELECT_IN if events & _READABLE else 0
                if events & select.EPOLLOUT:
                    mask |= pycurl.CSELECT_OUT
                if events & select.EPOLLERR:
                    mask |= pycurl.CSELECT_ERR
                running = act(fd, mask)[1]
        except pycurl.error as exc:
            self._broken(exc)
            return
        if 0 <= running < len(self.waiting):
            self._collect()

    def _on_timer(self, timeout_ms: int) -> None:
        if timeout_ms < 0 or self.closed:
            self.deadline = None
        elif timeout_ms == 0:
            self.deadline = 0.0
            if not self.soon:
                self.soon = True
                self.loop.call_soon(self._soon)
        else:
            self._arm(self.loop.time() + timeout_ms / 1000)

    def _arm(self, deadline: float) -> None:
        self.deadline = deadline
        if self.timer is None or self.timer_at > deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._timer)
            self.timer_at = deadline

    def _soon(self) -> None:
        self.soon = False
        self._due()

    def _timer(self) -> None:
        self.timer = None
        self._due()

    def _due(self) -> None:
        deadline = self.deadline
        if deadline is None or self.closed:
            return
        if deadline > self.loop.time() + _TIMER_SLACK:  # moved on since: wait for it
            if self.timer is None or self.timer_at > deadline:
                self._arm(deadline)
            return
        self.deadline = None  # curl sets the next one (it does after a timeout run)
        try:
            running = self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)[1]
        except pycurl.error as exc:
            self._broken(exc)
            return
        if running < len(self.waiting):
            self._collect()

    def _collect(self) -> None:
        multi, waiting = self.multi, self.waiting
        while True:
            queued, ok, failed = multi.info_read()
            for curl in ok:
                multi.remove_handle(curl)
                future = waiting.pop(curl, None)
                if future is not None and not future.done():
                    future.set_result(None)
            for curl, code, message in failed:
                multi.remove_handle(curl)
                future = waiting.pop(curl, None)
                if future is not None and not future.done():
                    future.set_result((code, message))
            if not queued:
                return

    def _broken(self, exc: pycurl.error) -> None:
        """The multi handle failed (not a transfer): every transfer fails."""
        code, message = exc.args if len(exc.args) == 2 else (0, str(exc))
        for curl, future in list(self.waiting.items()):
            del self.waiting[curl]
            self.multi.remove_handle(curl)
            if not future.done():
                future.set_result((code, f"curl multi error: {message}"))


__all__ = ["CurlLoop"]

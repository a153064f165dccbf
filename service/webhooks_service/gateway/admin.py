"""Envoy's admin interface, on a unix socket (the default) or 127.0.0.1:PORT,
and what the gateway reads from it: readiness, listener addresses, upstream
health, requests in flight."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

from webhooks_service.hostport import Address

__all__ = ["AdminClient"]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _unix_request(path: str, method: str, target: str, timeout: float) -> tuple[int, str]:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request(method, target)
        resp = conn.getresponse()
        return int(resp.status), resp.read().decode(errors="replace")
    finally:
        conn.close()


def _tcp_request(url: str, method: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        if method != "GET":
            raise
        return exc.code, exc.read().decode(errors="replace")


class AdminClient:
    """Requests to one Envoy's admin interface: ``socket`` or ``address``."""

    def __init__(self, *, socket: Path | None = None, address: Address | None = None) -> None:
        self.socket = socket
        self.address = address

    @property
    def url(self) -> str:
        """Where the admin interface is, for messages."""
        if self.socket is not None:
            return f"unix:{self.socket}"
        return f"http://{self.address}"

    @property
    def known(self) -> bool:
        """Whether there is something to send requests to yet."""
        return self.address is not None or (self.socket is not None and self.socket.exists())

    def request(self, method: str, target: str, timeout: float = 1.0) -> tuple[int, str]:
        if self.socket is not None:
            return _unix_request(str(self.socket), method, target, timeout)
        assert self.address is not None
        return _tcp_request(f"http://{self.address}{target}", method, timeout)

    def get(self, target: str) -> tuple[int, str]:
        return self.request("GET", target)

    def ready(self) -> bool:
        """``/ready`` answers LIVE: the listeners are bound and the upstream
        cluster's first round of health checks is done."""
        status, body = self.get("/ready")
        return status == 200 and body.strip() == "LIVE"

    def listener_address(self, name: str) -> Address | None:
        """The bound address of a listener (resolves a port of 0); None if absent."""
        _, body = self.get("/listeners?format=json")
        for listener in json.loads(body).get("listener_statuses", []):
            if listener.get("name") == name:
                sock = listener["local_address"]["socket_address"]
                return Address(sock["address"], int(sock["port_value"]))
        return None

    def healthy_upstreams(self, cluster: str) -> set[str]:
        """``host:port`` of the hosts of ``cluster`` that Envoy currently routes to."""
        _, body = self.get("/clusters?format=json")
        healthy: set[str] = set()
        for status in json.loads(body).get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            for host in status.get("host_statuses", []):
                flags = host.get("health_status", {})
                bad = any(k != "eds_health_status" and v for k, v in flags.items())
                if not bad:
                    sock = host["address"]["socket_address"]
                    healthy.add(f"{sock['address']}:{sock['port_value']}")
        return healthy

    def active_requests(self, stat_prefix: str) -> int:
        """Requests the listener of ``stat_prefix`` is handling right now."""
        _, body = self.get(f"/stats?filter=^http\\.{stat_prefix}\\.downstream_rq_active$")
        _, _, value = body.strip().partition(": ")
        return int(value) if value.isdigit() else 0

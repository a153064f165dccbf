"""Checks the service commands make before touching the database.

A listen address that cannot work (port 99999, a port another process holds)
is a one-line error naming the option, said before migrations run and before
gRPC's C core logs its own lines about it.
"""

from __future__ import annotations

import errno
import socket

from webhooks_service.config import Settings
from webhooks_service.errors import ConfigurationError
from webhooks_service.hostport import parse_address


def _split(text: str, option: str) -> tuple[str, int]:
    address = parse_address(text, what=option, allow_zero_port=True, example="127.0.0.1:50051")
    return address.host, address.port


def check_listen(text: str, option: str, variable: str, *, other: str = "") -> None:
    """ConfigurationError unless ``text`` (HOST:PORT) can be listened on now."""
    host, port = _split(text, option)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"{option} {text!r}: unknown host ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"cannot listen on {text} ({option}): the address is already in use, "
                    f"probably by another webhooks process; give this one its own {option} "
                    f"HOST:PORT (or {variable}){other}"
                ) from exc
            raise ConfigurationError(f"cannot listen on {text} ({option}): {exc.strerror}") from exc


def check_service_addresses(settings: Settings, *, grpc: bool = True) -> None:
    """The gRPC and metrics addresses of ``serve`` / ``run`` (``grpc=False``: ``worker``)."""
    if grpc:
        check_listen(settings.grpc_listen, "--grpc-listen", "WEBHOOKS_GRPC_LISTEN")
    if settings.metrics_listen:
        check_listen(
            settings.metrics_listen,
            "--metrics-listen",
            "WEBHOOKS_METRICS_LISTEN",
            other=", or --metrics-listen '' to run without a metrics endpoint",
        )

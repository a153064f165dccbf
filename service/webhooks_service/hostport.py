"""``HOST:PORT``: the one parser of listen and upstream addresses.

Every ``--…-listen`` option, the gateway's ``--upstream`` and the addresses
Envoy reports are ``HOST:PORT`` (``127.0.0.1:8080``, ``[::1]:8080``,
``localhost:8080``). Base floor: imports only ``errors``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from webhooks_service.errors import ConfigurationError

__all__ = ["Address", "parse_address"]


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_address(
    text: str, *, what: str, allow_zero_port: bool = False, example: str = "127.0.0.1:8080"
) -> Address:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"`` or ``"localhost:8080"`` -> Address.

    ``what`` names the option in the error (``--grpc-listen``); port 0 (pick
    one) only with ``allow_zero_port``. Anything else is a ConfigurationError
    that says what was expected.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit():
        raise ConfigurationError(f"{what} {text!r}: expected HOST:PORT, e.g. {example}")
    port = int(port_text)
    low = 0 if allow_zero_port else 1
    if not low <= port <= 65535:
        raise ConfigurationError(f"{what} {text!r}: the port must be {low} to 65535")
    return Address(host, port)

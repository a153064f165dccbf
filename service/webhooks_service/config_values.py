"""The value parsers of the settings: one operator string -> a checked value.

Each raises ConfigurationError naming the setting's value and what to give
instead; config.py's table (``SETTINGS``) names which parser each setting uses.
"""

from __future__ import annotations

from webhooks_service.errors import ConfigurationError

__all__ = [
    "EVENT_LOOPS",
    "parse_dashboard_url",
    "parse_duration",
    "parse_event_loop",
    "parse_log_format",
    "parse_networks",
    "parse_origins",
    "parse_page_budget",
    "parse_portal_ttl",
    "parse_schedule",
]


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,30,120"`` -> (5.0, 30.0, 120.0); each delay positive, fractions allowed."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigurationError(f"retry schedule {text!r}: not a list of numbers") from exc
    if not delays or any(d <= 0 for d in delays):
        raise ConfigurationError(f"retry schedule {text!r}: give one or more positive delays")
    return delays


def parse_networks(text: str) -> tuple[str, ...]:
    import ipaddress

    nets = tuple(part.strip() for part in text.split(",") if part.strip())
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigurationError(f"allowed target network {net!r}: {exc}") from exc
    return nets


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"5d"``, ``"12h"``, ``"30m"``, ``"45s"`` or plain seconds -> seconds (>= 0)."""
    raw = text.strip().lower()
    unit = _DURATION_UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError as exc:
        raise ConfigurationError(
            f"duration {text!r}: use e.g. 5d, 12h, 30m, 45s or seconds"
        ) from exc
    if seconds < 0:
        raise ConfigurationError(f"duration {text!r}: must not be negative")
    return seconds


def parse_page_budget(text: str) -> int:
    """A log page byte budget: an integer of at least 64 KiB."""
    try:
        value = int(text)
    except ValueError as exc:
        raise ConfigurationError(f"log page budget {text!r}: not a number of bytes") from exc
    if value < 65536:
        raise ConfigurationError(f"log page budget {text!r}: at least 65536 bytes")
    return value


def parse_log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "json", "text"):
        raise ConfigurationError(f"log format {text!r}: use json, text or auto")
    return value


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def parse_event_loop(text: str) -> str:
    """``auto``, ``asyncio`` or ``uvloop``; whether uvloop is installed is checked
    when a command starts its loop (commands/_event_loop.py), not here."""
    value = text.strip().lower()
    if value not in EVENT_LOOPS:
        raise ConfigurationError(f"event loop {text!r}: use auto, asyncio or uvloop")
    return value


def parse_portal_ttl(text: str) -> float:
    seconds = parse_duration(text)
    if not 60 <= seconds <= 86400:
        raise ConfigurationError(f"portal session lifetime {text!r}: must be 1m to 24h")
    return seconds


def parse_dashboard_url(text: str) -> str:
    from urllib.parse import urlsplit

    url = text.strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ConfigurationError(
                f"dashboard URL {text!r}: give an absolute http(s) URL without a #fragment"
            )
    return url


def parse_origins(text: str) -> tuple[str, ...]:
    """``"https://a.example, http://localhost:3000"`` -> the origins, checked."""
    import re

    origins = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in origins:
        if not re.fullmatch(
            r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?",
            origin,
        ):
            raise ConfigurationError(
                f"CORS origin {origin!r}: give scheme://host[:port], e.g. https://app.example.com"
            )
    return origins

"""The event catalog, read from the protos.

``webhooks.v1.EventType`` is the single definition of the catalog: each value
(except the unspecified one) carries its dotted wire name in the ``wire_name``
enum value option. This module reads those options once at import time, so a
new type added to ``events.proto`` (and ``make gen``) is known everywhere
without touching Python code.

Patterns (what a webhook configuration subscribes to) are a catalog type
(``reward.claimed``), a category wildcard (``reward.*``) or ``*``.

**Operational types** (category ``webhook``: ``webhook.endpoint_disabled``,
``webhook.delivery_failed``) are in the catalog but sent only by the service
itself (``core/operational.py``): they cannot be published, and ``*`` does
not cover them — a configuration receives them only by naming them
(``webhook.*`` or the exact name), so existing ``*`` subscribers never get
payloads of a new shape about the webhook system unasked.
"""

from __future__ import annotations

import difflib

from webhooks.v1 import events_pb2

WILDCARD = "*"


def _read_catalog() -> tuple[str, ...]:
    enum = events_pb2.DESCRIPTOR.enum_types_by_name["EventType"]
    names: list[str] = []
    for value in enum.values:
        if value.number == 0:
            continue
        wire: str = value.GetOptions().Extensions[events_pb2.wire_name]
        if not wire or wire.count(".") != 1:
            raise RuntimeError(f"EventType {value.name} lacks a dotted wire_name option")
        names.append(wire)
    if len(set(names)) != len(names):
        raise RuntimeError("EventType wire names are not unique")
    return tuple(names)


EVENT_TYPES: tuple[str, ...] = _read_catalog()
"""Every dotted event type, in the order of the enum."""

_TYPE_SET = frozenset(EVENT_TYPES)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.split(".", 1)[0] for t in EVENT_TYPES))
"""The categories (``user``, ``action``, …), in the order of the enum."""

_CATEGORY_SET = frozenset(CATEGORIES)

OPERATIONAL_CATEGORY = "webhook"
OPERATIONAL_TYPES: frozenset[str] = frozenset(
    t for t in EVENT_TYPES if t.startswith(OPERATIONAL_CATEGORY + ".")
)
"""The service's own event types (never published by clients, not in ``*``)."""


def all_types() -> tuple[str, ...]:
    return EVENT_TYPES


def categories() -> tuple[str, ...]:
    return CATEGORIES


def is_known_type(event_type: str) -> bool:
    """True for an exact catalog type such as ``reward.claimed`` (no wildcards)."""
    return event_type in _TYPE_SET


def is_operational(event_type: str) -> bool:
    """True for a ``webhook.*`` type (operational, or the reserved ``webhook.ping``)."""
    return event_type.startswith(OPERATIONAL_CATEGORY + ".")


def is_publishable(event_type: str) -> bool:
    """True for a catalog type a client may publish (not an operational one)."""
    return event_type in _TYPE_SET and event_type not in OPERATIONAL_TYPES


def is_valid_pattern(pattern: str) -> bool:
    """True for a catalog type, ``*``, or ``category.*`` with a known category."""
    if pattern == WILDCARD or pattern in _TYPE_SET:
        return True
    if pattern.endswith(".*"):
        return pattern[:-2] in _CATEGORY_SET
    return False


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern covers an event type.

    ``*`` covers every type except the operational ones, ``reward.*`` every
    type of category ``reward``, anything else only itself.
    """
    if pattern == WILDCARD:
        return event_type not in OPERATIONAL_TYPES
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def matches_any(patterns: list[str] | tuple[str, ...], event_type: str) -> bool:
    """Whether any of a configuration's patterns covers ``event_type``."""
    return any(matches(p, event_type) for p in patterns)


def did_you_mean(name: str, valid: list[str] | tuple[str, ...] | None = None) -> str:
    """``one of …`` or ``did you mean …?`` for an unknown name, for error messages.

    ``valid`` defaults to every catalog type; the answer also says where the
    whole list is.
    """
    choices = list(EVENT_TYPES if valid is None else valid)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if not close and valid is None and "." in name:
        category = name.split(".", 1)[0]
        close = [t for t in choices if t.startswith(category + ".")][:3]
    if len(choices) <= 8:
        return "one of " + ", ".join(choices)
    where = "ListEventTypes (GET /webhooks/event-types) lists them all"
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + f"? {where}"
    return f"not an event type; {where}"

"""The event catalog, read from the protos.

``webhooks.v1.EventType`` is the single definition of the catalog: each value
(except the unspecified one) carries its dotted wire name in the ``wire_name``
enum value option, the message of its ``data`` in ``payload`` and who sends
it in ``origin``. This module reads those options once at import time, so a
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
from dataclasses import dataclass

from webhooks.v1 import events_pb2

WILDCARD = "*"


@dataclass(frozen=True)
class TypeInfo:
    """One ``EventType`` value: its wire name, payload message and origin."""

    name: str
    payload: str  # full name of the payload message, "webhooks.v1.RewardClaimed"
    origin: int  # events_pb2.EventOrigin

    @property
    def category(self) -> str:
        return self.name.split(".", 1)[0]


def _read_catalog() -> tuple[TypeInfo, ...]:
    enum = events_pb2.DESCRIPTOR.enum_types_by_name["EventType"]
    infos: list[TypeInfo] = []
    for value in enum.values:
        if value.number == 0:
            continue
        options = value.GetOptions()
        wire: str = options.Extensions[events_pb2.wire_name]
        if not wire or wire.count(".") != 1:
            raise RuntimeError(f"EventType {value.name} lacks a dotted wire_name option")
        payload: str = options.Extensions[events_pb2.payload]
        if not payload:
            raise RuntimeError(f"EventType {value.name} lacks a payload option")
        infos.append(TypeInfo(wire, payload, options.Extensions[events_pb2.origin]))
    for what in ("name", "payload"):
        if len({getattr(i, what) for i in infos}) != len(infos):
            raise RuntimeError(f"EventType {what}s are not unique")
    return tuple(infos)


TYPES: tuple[TypeInfo, ...] = _read_catalog()
"""Every value of the enum, in enum order: the published types, the
operational ``webhook.*`` ones and the test event ``webhook.ping``."""

_BY_NAME = {t.name: t for t in TYPES}
_BY_PAYLOAD = {t.payload: t for t in TYPES}

EVENT_TYPES: tuple[str, ...] = tuple(
    t.name for t in TYPES if t.origin != events_pb2.EVENT_ORIGIN_TEST
)
"""Every type a configuration can subscribe to, in the order of the enum
(``webhook.ping`` is not one: it goes only to the endpoint tested)."""

PUBLISHABLE: tuple[str, ...] = tuple(
    t.name for t in TYPES if t.origin == events_pb2.EVENT_ORIGIN_PUBLISHED
)
"""The types internal services may publish (not the ones the service sends itself)."""

_TYPE_SET = frozenset(EVENT_TYPES)
_PUBLISHABLE_SET = frozenset(PUBLISHABLE)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.split(".", 1)[0] for t in EVENT_TYPES))
"""The categories (``user``, ``action``, …), in the order of the enum."""

_CATEGORY_SET = frozenset(CATEGORIES)

OPERATIONAL_CATEGORY = "webhook"
OPERATIONAL_TYPES: frozenset[str] = frozenset(
    t.name for t in TYPES if t.origin == events_pb2.EVENT_ORIGIN_SERVICE
)
"""The service's own event types (never published by clients, not in ``*``)."""


def info(event_type: str) -> TypeInfo | None:
    """The enum entry of any type (``webhook.ping`` included); None if unknown."""
    return _BY_NAME.get(event_type)


def for_payload(message_name: str) -> TypeInfo | None:
    """The type whose payload message is ``message_name`` ("webhooks.v1.RewardClaimed")."""
    return _BY_PAYLOAD.get(message_name)


def is_publishable(event_type: str) -> bool:
    """True for a type internal services may publish with PublishEvent."""
    return event_type in _PUBLISHABLE_SET


def all_types() -> tuple[str, ...]:
    """The subscribable types (see :data:`EVENT_TYPES`)."""
    return EVENT_TYPES


def categories() -> tuple[str, ...]:
    return CATEGORIES


def is_known_type(event_type: str) -> bool:
    """True for an exact catalog type such as ``reward.claimed`` (no wildcards)."""
    return event_type in _TYPE_SET


def is_operational(event_type: str) -> bool:
    """True for a ``webhook.*`` type (operational, or the reserved ``webhook.ping``)."""
    return event_type.startswith(OPERATIONAL_CATEGORY + ".")


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

    ``valid`` defaults to the publishable types; the answer also says where
    the whole list is.
    """
    choices = list(PUBLISHABLE if valid is None else valid)
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

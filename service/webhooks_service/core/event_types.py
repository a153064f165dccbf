"""The described catalog: every event type with its JSON Schema and example.

``make gen`` derives ``webhooks/v1/event_types.json`` (in the client
package, beside the stubs) from the protos: the ``EventType`` enum's wire
names and comments, and each type's payload message with its field comments
(``scripts/event_catalog.py``). This module reads it once; ``ListEventTypes``
answers it, ``webhooks event-types`` prints it.

``schema`` is the JSON Schema (draft 2020-12) of ``data`` as delivered, and
it is answered as a JSON object (``google.protobuf.Struct``), not a string,
so REST clients get it ready to use; ``example`` likewise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from webhooks_service.core import catalog
from webhooks_service.errors import FieldViolation, InvalidArgument

__all__ = ["EventTypeInfo", "described_types", "list_event_types"]


@dataclass(frozen=True)
class EventTypeInfo:
    name: str
    category: str
    description: str
    schema: dict[str, Any]
    example: dict[str, Any]


@cache
def described_types() -> tuple[EventTypeInfo, ...]:
    """Every type of the generated catalog, in catalog order."""
    text = resources.files("webhooks.v1").joinpath("event_types.json").read_text()
    return tuple(
        EventTypeInfo(
            name=entry["name"],
            category=entry["category"],
            description=entry["description"],
            schema=entry["schema"],
            example=entry["example"],
        )
        for entry in json.loads(text)["event_types"]
    )


def list_event_types(category: str = "") -> list[EventTypeInfo]:
    """The catalog, or one category of it (INVALID_ARGUMENT for an unknown one)."""
    types = described_types()
    if not category:
        return list(types)
    known = list(dict.fromkeys(t.category for t in types))
    if category not in known:
        hint = catalog.did_you_mean(category, known)
        raise InvalidArgument(
            f"unknown category {category!r}: {hint}", [FieldViolation("category", hint)]
        )
    return [t for t in types if t.category == category]

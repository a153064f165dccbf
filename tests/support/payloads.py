"""Valid ``data`` for any event type, from the catalog's examples (the ones
``ListEventTypes`` answers and the protos carry), for tests that publish.

    publisher.publish_event(org_id, "reward.claimed", example("reward.claimed"))
    example("reward.claimed", points="7")        # with fields replaced
"""

from __future__ import annotations

import copy
from typing import Any

from webhooks_service.core.event_types import described_types


def example(event_type: str = "reward.claimed", **fields: Any) -> dict[str, Any]:
    """A fresh copy of the type's example ``data``, with ``fields`` set on top."""
    for t in described_types():
        if t.name == event_type:
            return {**copy.deepcopy(t.example), **fields}
    raise KeyError(f"no example for {event_type!r}")

"""A delivery as the admin sees it (``DeliveryState``): one query shape, one reading.

RetryDelivery and ReplayDeliveries (storage/replay.py) and GetEvent
(storage/event_view.py) read deliveries the same way: :func:`select_state`
joins a delivery to its event and configuration, :func:`state_of` reads a
row of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.domain import DeliveryStatus, is_held
from webhooks_service.storage.models import Delivery, Event, WebhookConfig

__all__ = ["DeliveryState", "select_state", "state_of"]

_D = cast(sa.Table, Delivery.__table__)
_E = cast(sa.Table, Event.__table__)
_C = cast(sa.Table, WebhookConfig.__table__)


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """A delivery as the admin sees it, plus whether its endpoint is enabled."""

    id: int
    organisation_id: str
    event_id: str
    event_type: str
    config_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    claimed: bool  # a worker holds it under lease (or held it and died)
    config_enabled: bool
    ordering_key: str | None = None
    sequence: int | None = None
    config_ordered: bool = False

    @property
    def waiting_for_turn(self) -> bool:
        """Pending behind an earlier delivery of its ordering key (storage/ordering.py)."""
        return self.status is DeliveryStatus.PENDING and is_held(self.next_attempt_at)

    @property
    def ordered(self) -> bool:
        """Whether the ordering rule applies to it now."""
        return self.config_ordered and self.ordering_key is not None


def state_of(r: Any) -> DeliveryState:
    return DeliveryState(
        id=r.id,
        organisation_id=r.organisation_id,
        event_id=r.event_id,
        event_type=r.event_type,
        config_id=r.config_id,
        status=DeliveryStatus(r.status),
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        claimed=r.claim_token is not None,
        config_enabled=bool(r.enabled),
        ordering_key=r.ordering_key,
        sequence=r.sequence,
        config_ordered=bool(r.ordered),
    )


def select_state() -> sa.Select[Any]:
    return (
        sa.select(
            _D.c.id,
            _D.c.organisation_id,
            _E.c.event_id,
            _E.c.event_type,
            _D.c.config_id,
            _D.c.status,
            _D.c.attempts,
            _D.c.next_attempt_at,
            _D.c.claim_token,
            _C.c.enabled,
            _D.c.ordering_key,
            _D.c.sequence,
            _C.c.ordered,
        )
        .join(_E, _E.c.pk == _D.c.event_pk)
        .join(_C, _C.c.id == _D.c.config_id)
    )

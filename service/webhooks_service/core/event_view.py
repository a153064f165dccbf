"""GetEvent: one event of the caller's organisation and every endpoint's delivery of it.

The message view of the portal: the event's type, time and exact payload,
and per delivery its state, the endpoint's URL (also once the endpoint is
deleted: the row stays, ``storage/config_deletion.py``) and its newest
:data:`ATTEMPTS_PER_DELIVERY` attempts without bodies (ListDeliveryLogs with
``event_id`` pages through all of them, bodies included). Another
organisation's event id is NOT_FOUND, exactly as an unknown one.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from webhooks_service.core import ids
from webhooks_service.errors import FieldViolation, InvalidArgument, NotFound
from webhooks_service.storage import db, event_view
from webhooks_service.storage.event_view import EventDelivery, EventView

__all__ = ["ATTEMPTS_PER_DELIVERY", "EventDelivery", "EventView", "get_event"]

ATTEMPTS_PER_DELIVERY = 20


def get_event(engine: Engine, organisation_id: str, event_id: str) -> EventView:
    problem = ids.event_id_problem(event_id)
    if problem:
        raise InvalidArgument("invalid GetEvent request", [FieldViolation("event_id", problem)])
    with db.read_transaction(engine) as conn:
        view = event_view.get_event(
            conn, organisation_id, event_id, per_delivery=ATTEMPTS_PER_DELIVERY
        )
    if view is None:
        raise NotFound(f"event {event_id!r} not found")
    return view

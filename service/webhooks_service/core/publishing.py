"""Publishing events: validation, the payload, and the fan-out transaction.

``publish_events`` is the use case behind ``EventPublisher.PublishEvent(s)``:

The body's bytes (``build_payload``, event ids, RFC 3339 times) are
``core/event_body.py``'s, shared with test events, pings, verification
challenges and operational webhooks.

1. **Who may publish where.** A key of one organisation publishes only for
   that organisation (another ``organisation_id`` is PERMISSION_DENIED; an
   empty one means its own); a platform key (no organisation) publishes for
   any organisation and must name it.
2. **Validation** (INVALID_ARGUMENT, one field violation per problem, fields
   prefixed ``requests[i].`` in a batch): the type is in the catalog; the
   event id, when given, is at most 128 characters of ``[A-Za-z0-9_.:-]``
   (``evt_…`` is generated when empty); ``data`` (JSON) or ``payload`` (the
   typed message) is valid for the type's payload message
   (``core/payloads.py``, which also renders it) and at most
   ``max_event_bytes`` serialised.
3. **The payload** is built once, here: ``{"id","type","timestamp","data"}``,
   compact JSON, timestamp RFC 3339 in UTC, ``data`` in proto JSON (int64 as
   decimal strings). These bytes are stored and sent verbatim on every
   attempt.
4. **One transaction** (``storage.events.publish_transaction``) reads the
   organisations' enabled configurations, then ``plan`` decides, with plain
   data, which configurations get a delivery (``catalog.matches_any``) and
   which of those are handed over: ``lend(organisation_id)`` (the in-process
   worker's scheduler, a ``HandOff``) reserves the slots that organisation
   could start now, and ``take(destination)`` spends them. The writer then
   inserts the events and deliveries (idempotent on (organisation, event
   id)), the handed-over ones already claimed; they start after the commit,
   when the hand-off is settled. ``notify()`` wakes the workers for any
   delivery left unclaimed. The answer is given after the commit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from google.protobuf import any_pb2
from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import catalog, filters, payloads
from webhooks_service.core.event_body import (
    ID_CHARS,
    build_payload,
    new_event_id,
    new_event_ids,
)
from webhooks_service.domain import (
    MAX_ORDERING_KEY,
    ClaimedDelivery,
    Destination,
    new_lease,
    utcnow,
)
from webhooks_service.errors import FieldViolation, InvalidArgument, PermissionDenied
from webhooks_service.observability import tracing
from webhooks_service.storage.events import (
    NewEvent,
    PlannedEvent,
    Target,
    publish_transaction,
)

MAX_BATCH = 500
EVENT_ID_RE = re.compile(ID_CHARS + "{1,128}")
# Visible ASCII: it travels as the webhook-ordering-key header value, unchanged.
ORDERING_KEY_RE = re.compile(r"[\x21-\x7e]{1," + str(MAX_ORDERING_KEY) + "}")

__all__ = [
    "MAX_BATCH",
    "EventInput",
    "HandOff",
    "Lend",
    "StoredEvent",
    "plan",
    "prepare",
    "publish_events",
    "store_events",
]


@dataclass(frozen=True, slots=True)
class EventInput:
    """One publish request, decoded from the proto."""

    organisation_id: str
    event_id: str
    event_type: str
    timestamp: datetime | None
    # The request's Struct (walked once by core/payloads.py) or a decoded JSON object.
    data: payloads.Data | None
    payload: any_pb2.Any | None = None  # the typed payload message, packed
    ordering_key: str = ""  # empty: not ordered (issue 22)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    deliveries: int  # deliveries created (0 for a duplicate)
    duplicate: bool


class HandOff(Protocol):
    """Slots of the in-process worker reserved for one publish (``LocalWorker.lend``).

    ``take(destination)`` is asked for each planned delivery (True: insert it
    claimed under a lease of ``lease_seconds``); ``handed`` gets the
    deliveries so inserted, after the commit; ``settle()`` (on the event loop,
    whatever happened) returns the reservation and starts them, answering
    how many were handed over.
    """

    lease_seconds: float

    def take(self, destination: Destination) -> bool: ...

    def handed(self, claimed: Sequence[ClaimedDelivery]) -> None: ...

    async def settle(self) -> int: ...


Lend = Callable[[str], HandOff | None]


def prepare(
    item: EventInput,
    *,
    caller_org: str | None,
    settings: Settings,
    now: datetime,
    prefix: str = "",
    generated_id: str | None = None,
) -> tuple[NewEvent | None, list[FieldViolation]]:
    """Check one request; the event to store, or the violations found.

    ``generated_id`` (from :func:`new_event_ids`) is the id of a request that
    gives none; one is made here when it is not given. Raises PermissionDenied
    when an organisation key publishes for another organisation.
    """
    violations: list[FieldViolation] = []
    org = item.organisation_id
    if caller_org is not None:
        if org and org != caller_org:
            raise PermissionDenied(
                f"this key publishes only for organisation {caller_org}, not {org}"
            )
        org = caller_org
    elif not org:
        violations.append(
            FieldViolation(f"{prefix}organisation_id", "required with a platform key")
        )
    if item.event_id:
        event_id = item.event_id
        if not EVENT_ID_RE.fullmatch(event_id):
            violations.append(
                FieldViolation(
                    f"{prefix}event.id", "at most 128 characters of letters, digits and _ . : -"
                )
            )
    else:
        event_id = generated_id or new_event_id()
    if item.ordering_key and not ORDERING_KEY_RE.fullmatch(item.ordering_key):
        violations.append(
            FieldViolation(
                f"{prefix}event.ordering_key",
                f"1 to {MAX_ORDERING_KEY} visible ASCII characters (no spaces or control "
                f"characters); got {len(item.ordering_key)} characters",
            )
        )
    # The type, and data checked against its payload message (core/payloads.py).
    resolved, problems = payloads.resolve(item.event_type, item.data, item.payload, prefix=prefix)
    violations.extend(problems)
    event_type = resolved.event_type if resolved is not None else item.event_type
    data_json = resolved.data_json if resolved is not None else "{}"
    size = len(data_json) if data_json.isascii() else len(data_json.encode())
    if size > settings.max_event_bytes:
        violations.append(
            FieldViolation(
                f"{prefix}event.data",
                f"{size} bytes serialised; the limit is {settings.max_event_bytes} bytes",
            )
        )
    if violations:
        return None, violations
    occurred = item.timestamp or now
    payload = build_payload(event_id, event_type, occurred, data_json)
    new = NewEvent(org, event_id, event_type, occurred, payload)
    if item.ordering_key:
        new = replace(new, ordering_key=item.ordering_key)
    return new, []


def plan(
    events: Sequence[NewEvent],
    targets: Mapping[str, Sequence[Target]],
    handoff: HandOff | None,
) -> list[PlannedEvent]:
    """Which configurations get a delivery of each event, and which are handed over.

    A configuration gets one when one of its patterns covers the event's type
    and its payload filter, if any, accepts the event (core/filters.py: the
    payload is parsed at most once per event, for the first filter asked).
    """
    destinations: dict[str, Destination] = {}
    matcher: filters.Matcher | None = None

    def handed(t: Target) -> bool:
        if handoff is None or t.waits:  # waiting for its verification: parked, not handed
            return False
        dest = destinations.get(t.url)
        if dest is None:
            dest = destinations[t.url] = Destination.of(t.url)
        return handoff.take(dest)

    planned: list[PlannedEvent] = []
    for e in events:
        matching = [
            t
            for t in targets.get(e.organisation_id, ())
            if catalog.matches_any(t.event_types, e.event_type)
        ]
        filtered = [(t.config_id, t.filter) for t in matching if t.filter]
        if filtered:
            if matcher is None:
                matcher = filters.Matcher()
            view = filters.EventView(e.event_id, e.event_type, e.occurred_at, e.payload, body=True)
            rejected = matcher.rejected(view, filtered)
            if rejected:
                matching = [t for t in matching if t.config_id not in rejected]
        planned.append(PlannedEvent(e, [(t, handed(t)) for t in matching]))
    if matcher is not None:
        matcher.flush()
    return planned


def store_events(
    engine: Engine, new_events: Sequence[NewEvent], *, now: datetime, handoff: HandOff | None
) -> list[StoredEvent]:
    """Store events and their deliveries in one transaction; results in input order.

    An event id already published by the organisation (before, or earlier in
    this batch) is a duplicate: nothing is stored for it. Raises NotFound
    when an organisation does not exist. The deliveries ``handoff`` takes are
    inserted claimed and passed to ``handoff.handed`` after the commit (never
    when the write fails).
    """
    if not new_events:
        return []
    seen: set[tuple[str, str]] = set()
    unique: list[NewEvent] = []
    for e in new_events:
        if (e.organisation_id, e.event_id) not in seen:
            seen.add((e.organisation_id, e.event_id))
            unique.append(e)
    lease = new_lease(now, handoff.lease_seconds) if handoff is not None else None
    with publish_transaction(engine) as tx:
        planned = plan(unique, tx.targets(sorted({e.organisation_id for e in unique})), handoff)
        inserted = tx.insert(planned, now=now, lease=lease)
    if handoff is not None and inserted.handed:
        handoff.handed(inserted.handed)  # committed: the worker may start them
    counts = {(p.event.organisation_id, p.event.event_id): len(p.deliveries) for p in planned}
    results: list[StoredEvent] = []
    first: set[tuple[str, str]] = set()
    for e in new_events:
        key = (e.organisation_id, e.event_id)
        if key in inserted.stored and key not in first:
            first.add(key)
            results.append(StoredEvent(e.event_id, counts[key], False))
        else:
            results.append(StoredEvent(e.event_id, 0, True))
    return results


async def publish_events(
    engine: Engine,
    settings: Settings,
    caller_org: str | None,
    items: Sequence[EventInput],
    *,
    notify: Callable[[], Any] | None = None,
    lend: Lend | None = None,
    clock: Callable[[], datetime] = utcnow,
    batch: bool = False,
) -> list[StoredEvent]:
    """Validate and store ``items`` in one transaction; results in request order.

    ``batch`` prefixes field violations with ``requests[i].``.
    """
    if batch and not 1 <= len(items) <= MAX_BATCH:
        raise InvalidArgument(
            f"give 1 to {MAX_BATCH} events per batch",
            [FieldViolation("requests", f"{len(items)} given; 1 to {MAX_BATCH} allowed")],
        )
    now = clock()
    prepared: list[NewEvent] = []
    violations: list[FieldViolation] = []
    ids = iter(new_event_ids(sum(not item.event_id for item in items)))
    for i, item in enumerate(items):
        new, problems = prepare(
            item,
            caller_org=caller_org,
            settings=settings,
            now=now,
            prefix=f"requests[{i}]." if batch else "",
            generated_id=None if item.event_id else next(ids),
        )
        violations.extend(problems)
        if new is not None:
            prepared.append(new)
    if violations:
        first = violations[0]
        raise InvalidArgument(f"invalid event: {first.field}: {first.description}", violations)
    span = tracing.start_publish(  # hook: None while tracing is off
        [e.organisation_id for e in prepared], [e.event_id for e in prepared]
    )
    if span is not None:
        parent = tracing.traceparent(span)
        prepared = [replace(e, traceparent=parent) for e in prepared]
    orgs = {e.organisation_id for e in prepared}
    # One organisation's publish borrows that organisation's share of the worker.
    handoff = lend(next(iter(orgs))) if lend is not None and len(orgs) == 1 else None
    handed_over = 0
    store = asyncio.ensure_future(
        asyncio.to_thread(store_events, engine, prepared, now=now, handoff=handoff)
    )
    try:
        results = await asyncio.shield(store)
    except BaseException as exc:
        tracing.fail_publish(span, exc)
        raise
    finally:
        if handoff is not None:
            # Settle once the transaction is over, even if this call was
            # cancelled meanwhile: what it committed claimed must start now,
            # not when the lease runs out.
            await asyncio.wait([store])
            handed_over = await handoff.settle()
    if notify is not None and sum(r.deliveries for r in results) > handed_over:
        notify()
    if span is not None:
        tracing.end_publish(
            span, sum(r.deliveries for r in results), sum(r.duplicate for r in results)
        )
    return results

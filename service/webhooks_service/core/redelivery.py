"""Retrying one delivery and replaying a configuration's failures (admin RPCs).

Both put deliveries back in the queue; the workers then attempt them like any
other (``storage/replay.py`` does the writes). What we chose, and why:

- **Attempt numbers continue; the schedule is not restarted.** A manual retry
  is one more attempt of the same delivery (attempt 4, 5, …), so the log
  stays one story per delivery. A dead delivery (schedule used up) gets
  exactly one attempt and is dead again if that fails; a delivery that
  failed early (a 4xx) keeps the retries it had left. An admin who wants
  more simply retries again.
- **A delivered delivery may be retried by id** (re-sent on explicit
  request: a receiver lost it after answering 2xx), never by a replay: a
  replay only takes failed and dead deliveries.
- **Idempotent while pending.** A delivery that is already due or being
  attempted is left alone, so double clicks and client retries never make
  two attempts; a replay of a range whose deliveries are still pending
  replays nothing.
- **Disabled endpoints are a FAILED_PRECONDITION**, not a silent no-op: the
  worker would only record "endpoint disabled"; re-enable it first.
- **Replay ranges are bounded**: at most 31 days and 10,000 deliveries per
  call, so one request is one short transaction; past the cap nothing is
  replayed (FAILED_PRECONDITION) and the error says how to narrow the range.
- **Replays and test events are budgeted per organisation** (``OrgBudgets``,
  token buckets shared by every process, ``core/limits.py``):
  ``replay_deliveries_per_hour`` replayed deliveries (a full hour's worth
  at once, then refilled steadily) and
  ``test_events_per_minute`` test events (half a minute's worth at once).
  Past the budget nothing is replayed or sent and the call is
  RESOURCE_EXHAUSTED with how long to wait. Replayed work then goes through
  the worker's fair scheduler like any other: the budget protects the
  database, the scheduler the other tenants.
- **The filter as it is now decides** (issue 21): a retry of a delivery whose
  event the configuration's payload filter does not accept any more is a
  FAILED_PRECONDITION saying so; a replay moves back only the deliveries
  whose events the filter accepts now (the others stay as they ended). An
  automatic retry of a delivery already created is not re-filtered.
- **The range is on when the delivery was created** (its event published):
  "everything published during the outage" is what admins ask for, and the
  ``(config_id, created_at)`` index serves it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import filters
from webhooks_service.core.ids import PublicIds, check_config_id, id_problem
from webhooks_service.core.limits import SharedBuckets
from webhooks_service.core.server_keys import keyring
from webhooks_service.domain import DeliveryStatus, utcnow
from webhooks_service.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from webhooks_service.storage import replay as store
from webhooks_service.storage.config_deletion import CANCELLED_OUTCOME
from webhooks_service.storage.delivery_state import DeliveryState

__all__ = [
    "MAX_REPLAY_DELIVERIES",
    "MAX_REPLAY_RANGE",
    "REPLAYABLE",
    "DeliveryState",
    "OrgBudgets",
    "RetryResult",
    "parse_delivery_id",
    "replay_deliveries",
    "retry_delivery",
]

MAX_REPLAY_RANGE = timedelta(days=31)
MAX_REPLAY_DELIVERIES = 10_000
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.DEAD)
_DELIVERY_ID = re.compile(r"dlv_[0-9a-f]{16}")

Clock = Callable[[], datetime]


class OrgBudgets:
    """Per-organisation budgets of replayed deliveries and test events, shared by
    every process of the deployment (``core/limits.py``). A budget of 0 is
    unlimited. Synchronous: replays are decided in worker threads."""

    def __init__(
        self, buckets: SharedBuckets, replay_per_hour: float, test_events_per_minute: float
    ) -> None:
        self._buckets = buckets
        self.replay_per_hour = replay_per_hour
        self.test_events_per_minute = test_events_per_minute

    def spend_test_event(self, organisation_id: str, now: datetime) -> None:
        """Take one test event from the budget, or raise RESOURCE_EXHAUSTED."""
        per_minute = self.test_events_per_minute
        if per_minute <= 0:
            return
        capacity = max(1.0, per_minute / 2)
        taken = self._buckets.take(
            f"test:{organisation_id}",
            want=1,
            rate=per_minute / 60,
            capacity=capacity,
            now=now.timestamp(),
        )
        if taken.granted:
            return
        raise ResourceExhausted(
            f"too many test events for this organisation: at most {per_minute:g} per minute "
            f"({capacity:g} at once); retry in {math.ceil(taken.wait)} s",
            retry_after=taken.wait,
        )

    def reserve_replay(self, organisation_id: str, now: datetime) -> int:
        """Take what is left of the replay budget (at least 1, else RESOURCE_EXHAUSTED);
        give back what was not used with ``refund_replay``. -1: unlimited."""
        per_hour = self.replay_per_hour
        if per_hour <= 0:
            return -1
        taken = self._buckets.take(
            f"replay:{organisation_id}",
            want=int(per_hour),
            rate=per_hour / 3600,
            capacity=per_hour,
            now=now.timestamp(),
        )
        if taken.granted:
            return taken.granted
        raise ResourceExhausted(
            f"this organisation replayed its budget of {per_hour:g} deliveries per hour; "
            f"retry in {math.ceil(taken.wait)} s",
            retry_after=taken.wait,
        )

    def refund_replay(self, organisation_id: str, amount: int, now: datetime) -> None:
        if amount <= 0 or self.replay_per_hour <= 0:
            return
        per_hour = self.replay_per_hour
        self._buckets.give(
            f"replay:{organisation_id}",
            amount,
            rate=per_hour / 3600,
            capacity=per_hour,
            now=now.timestamp(),
        )


def default_budgets(settings: Settings, engine: Engine) -> OrgBudgets:
    """The deployment's budgets for these settings, on ``engine``'s shared buckets."""
    return OrgBudgets(
        SharedBuckets(engine), settings.replay_deliveries_per_hour, settings.test_events_per_minute
    )


@dataclass(frozen=True)
class RetryResult:
    delivery: DeliveryState
    scheduled: bool  # False: already due or being attempted; nothing changed


def parse_delivery_id(ids: PublicIds, value: str, field: str = "delivery_id") -> int | None:
    """The key behind an opaque ``dlv_…`` id (None: well-formed but not one of
    ours, answered like an unknown id); INVALID_ARGUMENT when malformed."""
    if not value:
        problem = "required: the delivery id, dlv_… (the delivery_id of a log entry)"
    elif _DELIVERY_ID.fullmatch(value) is None:
        problem = (
            id_problem(value, _DELIVERY_ID, "dlv_ followed by 16 hex digits, e.g. dlv_3f2a…") or ""
        )
    else:
        return ids.parse_delivery(value)
    raise InvalidArgument(f"invalid {field}", [FieldViolation(field, problem)])


def _disabled(config_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"webhook configuration {config_id} is disabled; re-enable it with "
        "PutWebhookConfig (enabled: true) before retrying or replaying its deliveries"
    )


def retry_delivery(
    engine: Engine, organisation_id: str, delivery_id: str, *, clock: Clock = utcnow
) -> RetryResult:
    """Schedule one delivery of the organisation for an attempt now (see module doc)."""
    number = parse_delivery_id(keyring(engine).ids, delivery_id)
    if number is None:
        raise NotFound(f"delivery {delivery_id} not found")
    found = store.filter_input(engine, organisation_id, number)
    if found is not None and found[0]:
        expression, event = found
        if not filters.accepts_stored(expression, [event]):
            raise FailedPrecondition(
                f"delivery {delivery_id}: the endpoint's filter does not accept event "
                f"{event.event_id} any more; change or clear the filter to send it"
            )
    state, scheduled = store.retry_delivery(engine, organisation_id, number, clock())
    if state is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if state.status == CANCELLED_OUTCOME:
        raise FailedPrecondition(
            f"delivery {delivery_id} was cancelled: its webhook configuration "
            f"{state.config_id} was deleted"
        )
    if not state.config_enabled:
        raise _disabled(state.config_id)
    return RetryResult(state, scheduled)


def replay_deliveries(
    engine: Engine,
    organisation_id: str,
    config_id: str,
    *,
    since: datetime | None,
    until: datetime | None,
    outcomes: Sequence[str] = (),
    clock: Clock = utcnow,
    budgets: OrgBudgets | None = None,
) -> int:
    """Put the configuration's failed/dead deliveries created in [since, until)
    back in the queue, due now; returns how many (see module doc)."""
    now = clock()
    problems: list[FieldViolation] = []
    try:
        check_config_id(config_id)
    except InvalidArgument as exc:
        problems.extend(exc.violations)
    end = until or now
    if since is None:
        problems.append(FieldViolation("since", "required: the start of the range"))
    elif since >= end:
        problems.append(FieldViolation("until", "must be after since"))
    elif end - since > MAX_REPLAY_RANGE:
        problems.append(
            FieldViolation(
                "until", f"the range may span at most {MAX_REPLAY_RANGE.days} days; replay in parts"
            )
        )
    for i, outcome in enumerate(outcomes):
        if outcome not in REPLAYABLE:
            problems.append(
                FieldViolation(
                    f"outcomes[{i}]", "only OUTCOME_FAILED and OUTCOME_DEAD can be replayed"
                )
            )
    if problems:
        raise InvalidArgument("invalid ReplayDeliveries request", problems)
    assert since is not None
    statuses = tuple(dict.fromkeys(outcomes)) or REPLAYABLE
    budget = budgets.reserve_replay(organisation_id, now) if budgets is not None else -1
    limit = MAX_REPLAY_DELIVERIES if budget < 0 else min(budget, MAX_REPLAY_DELIVERIES)
    used = 0
    try:
        only: list[int] | None = None
        expression, stored = store.range_filter_input(
            engine, organisation_id, config_id, statuses, since, end, limit=limit
        )
        if expression and len(stored) <= limit:
            only = filters.accepts_stored(expression, stored)
        result = store.replay_range(
            engine, organisation_id, config_id, statuses, since, end, now, limit=limit, only=only
        )
        used = result.replayed
    finally:
        if budgets is not None:
            budgets.refund_replay(organisation_id, budget - used, now)
    if result.config_enabled is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    if not result.config_enabled:
        raise _disabled(config_id)
    if result.matched > limit and limit < MAX_REPLAY_DELIVERIES:
        assert budgets is not None
        raise ResourceExhausted(
            f"more deliveries match than this organisation may replay now ({limit} left of "
            f"{budgets.replay_per_hour:g} per hour); nothing was replayed. Narrow since/until "
            "or retry later",
            retry_after=(result.matched - limit) * 3600 / budgets.replay_per_hour,
        )
    if result.matched > MAX_REPLAY_DELIVERIES:
        raise FailedPrecondition(
            f"more than {MAX_REPLAY_DELIVERIES} deliveries match; nothing was replayed. "
            "Narrow since/until and replay the range in parts"
        )
    return result.replayed

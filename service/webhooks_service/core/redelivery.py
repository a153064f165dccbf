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
  replayed and the error says how to narrow the range.
- **The range is on when the delivery was created** (its event published):
  "everything published during the outage" is what admins ask for, and the
  ``(config_id, created_at)`` index serves it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.core.ids import check_config_id, id_problem
from webhooks_service.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from webhooks_service.storage import replay as store
from webhooks_service.storage.config_deletion import CANCELLED_OUTCOME
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.replay import DeliveryState

__all__ = [
    "MAX_REPLAY_DELIVERIES",
    "MAX_REPLAY_RANGE",
    "REPLAYABLE",
    "DeliveryState",
    "RetryResult",
    "parse_delivery_id",
    "replay_deliveries",
    "retry_delivery",
]

MAX_REPLAY_RANGE = timedelta(days=31)
MAX_REPLAY_DELIVERIES = 10_000
REPLAYABLE = ("failed", "dead")
_DELIVERY_ID = re.compile(r"dlv_([1-9][0-9]{0,17})")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RetryResult:
    delivery: DeliveryState
    scheduled: bool  # False: already due or being attempted; nothing changed


def parse_delivery_id(value: str, field: str = "delivery_id") -> int:
    """``dlv_42`` -> 42; INVALID_ARGUMENT for anything else."""
    match = _DELIVERY_ID.fullmatch(value)
    if not value:
        problem = "required: the delivery id, dlv_… (the delivery_id of a log entry)"
    elif match is None:
        problem = id_problem(value, _DELIVERY_ID, "dlv_ followed by digits, e.g. dlv_42") or ""
    else:
        return int(match.group(1))
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
    number = parse_delivery_id(delivery_id)
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
    result = store.replay_range(
        engine,
        organisation_id,
        config_id,
        statuses,
        since,
        end,
        now,
        limit=MAX_REPLAY_DELIVERIES,
    )
    if result.config_enabled is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    if not result.config_enabled:
        raise _disabled(config_id)
    if result.matched > MAX_REPLAY_DELIVERIES:
        raise FailedPrecondition(
            f"more than {MAX_REPLAY_DELIVERIES} deliveries match; nothing was replayed. "
            "Narrow since/until and replay the range in parts"
        )
    return result.replayed

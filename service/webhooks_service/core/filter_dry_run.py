"""The filter dry run (TestWebhookFilter): a filter tried on recent events and an example.

Checked as at PUT (core/filter_check.py), then run as fan-out would
(core/filters.py: same programs, same "an error does not match" rule) over
the organisation's newest events within the retention window. Nothing is
stored or counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import catalog, payloads
from webhooks_service.core.filter_cache import NOT_CHECKED, PROGRAMS
from webhooks_service.core.filter_check import FIELD, check, subscribed_types
from webhooks_service.core.filters import EventView, evaluate, judge
from webhooks_service.domain import utcnow
from webhooks_service.errors import FieldViolation, InvalidArgument
from webhooks_service.storage import db
from webhooks_service.storage.recent_events import recent_events

__all__ = ["DRY_RUN_DEFAULT", "DRY_RUN_MAX", "DryRun", "Match", "dry_run"]

DRY_RUN_DEFAULT = 200
DRY_RUN_MAX = 1000


@dataclass(frozen=True, slots=True)
class Match:
    event_id: str
    event_type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class DryRun:
    examined: int
    matched: int
    matches: list[Match]
    errors: int
    example_matches: bool | None
    example_error: str


def _example(
    expression: str, patterns: Sequence[str], data: Mapping[str, Any], example_type: str
) -> tuple[bool | None, str]:
    types = subscribed_types(patterns)
    event_type = example_type or next(iter(types), "")
    if event_type not in types:
        raise InvalidArgument(
            "invalid filter test",
            [
                FieldViolation(
                    "example_type",
                    f"{event_type!r} is not one of the subscribed types: "
                    + catalog.did_you_mean(event_type, types),
                )
            ],
        )
    resolved, problems = payloads.resolve(event_type, data, None)
    if problems or resolved is None:
        raise InvalidArgument(
            "invalid filter test",
            [
                FieldViolation(p.field.replace("event.data", "example_data", 1), p.description)
                for p in problems
            ],
        )
    program = PROGRAMS.program(expression, event_type)
    if program is NOT_CHECKED:
        return False, f"the filter does not type-check against {event_type}"
    view = EventView("evt_example", event_type, utcnow(), resolved.data_json)
    ok = evaluate(program, view)
    if ok is None:
        return False, "the filter failed at run time on this example (counted as no match)"
    return ok, ""


def dry_run(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    expression: str,
    patterns: Sequence[str],
    limit: int = 0,
    example_data: Mapping[str, Any] | None = None,
    example_type: str = "",
    now: datetime | None = None,
) -> DryRun:
    """``expression`` checked as at PUT, then run over the organisation's recent events.

    Examines at most ``limit`` (default 200, at most 1000) of the newest
    events of the covered types published within the retention window, as
    fan-out would (same programs, same "an error does not match" rule), and
    the example payload if given. Nothing is stored or counted.
    """
    problems: list[FieldViolation] = []
    if not expression:
        problems.append(FieldViolation(FIELD, "required: the CEL expression to try"))
    problems.extend(_pattern_problems(patterns))
    if not problems:
        problems.extend(check(expression, patterns))
    if not 0 <= limit <= DRY_RUN_MAX:
        problems.append(FieldViolation("limit", f"0 to {DRY_RUN_MAX} (0: {DRY_RUN_DEFAULT})"))
    if problems:
        raise InvalidArgument("invalid filter test", problems)
    example: tuple[bool | None, str] = (None, "")
    if example_data is not None:
        example = _example(expression, patterns, example_data, example_type)
    now = now or utcnow()
    since = now - timedelta(days=settings.retention_days)
    with db.read_transaction(engine) as conn:
        events = recent_events(
            conn,
            organisation_id,
            subscribed_types(patterns),
            since=since,
            limit=limit or DRY_RUN_DEFAULT,
        )
    answers = judge(expression, events)
    matches = [
        Match(e.event_id, e.event_type, e.occurred_at)
        for e, ok in zip(events, answers, strict=True)
        if ok
    ]
    errors = sum(ok is None for ok in answers)
    return DryRun(len(events), len(matches), matches, errors, *example)


def _pattern_problems(patterns: Sequence[str]) -> list[FieldViolation]:
    if not patterns:
        return [
            FieldViolation("event_types", "required: at least one event type, 'category.*' or '*'")
        ]
    return [
        FieldViolation(
            f"event_types[{i}]",
            f"{p!r} is not a catalog event type, a known 'category.*' or '*': "
            + catalog.did_you_mean(p, catalog.all_types()),
        )
        for i, p in enumerate(patterns)
        if not catalog.is_valid_pattern(p)
    ]

"""Payload filters: a configuration's CEL expression, run at fan-out, retry and replay.

A filter is a Common Expression Language expression over ``event``:
``event.id`` and ``event.type`` (strings), ``event.occurred_at`` (a
timestamp) and ``event.data``, the typed payload message of the event's type
(``payloads.proto``). The parts, one job each:

- core/filter_env.py: the CEL environment (an envelope message per type).
- core/filter_check.py: :func:`~webhooks_service.core.filter_check.check`,
  what PUT and the dry run refuse.
- core/filter_cache.py: the compiled programs, bounded in estimated bytes.
- core/filter_dry_run.py: TestWebhookFilter over the recent events.
- here, evaluation: :class:`Matcher` (fan-out): per event, one activation
  built lazily (the payload parsed once into its message) shared by every
  configuration of the organisation, and the organisation's filters for the
  event's type evaluated as combined programs; :func:`accepts_stored`
  (retry, replay). An event of a type the filter does not type-check
  against does not match; an evaluation error (a division by zero, …) does
  not match either and is counted (:func:`counts`, exposed as
  ``webhooks_filter_events_total`` by observability/metrics.py, and a
  warning at most once a minute per configuration).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from webhooks_service.core.filter_cache import GROUPS, NOT_CHECKED, PROGRAMS
from webhooks_service.core.filter_env import type_env
from webhooks_service.storage.recent_events import StoredEvent

__all__ = [
    "COUNTED_CONFIGS",
    "EventView",
    "Matcher",
    "accepts_stored",
    "counts",
    "evaluate",
    "judge",
]

log = logging.getLogger(__name__)

COUNTED_CONFIGS = 10_000  # configurations whose skip/error counts are kept
_LOG_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class EventView:
    """One event as a filter sees it; the payload message is parsed on first use."""

    event_id: str
    event_type: str
    occurred_at: datetime
    data_json: str  # the delivered ``data`` (proto JSON), or the whole body if ``body``
    body: bool = False
    _activation: Any = None
    _failed: bool = False

    def activation(self) -> Any:
        """The cel activation of this event (None if its payload cannot be read)."""
        if self._activation is None and not self._failed:
            te = type_env(self.event_type)
            try:
                if te is None:
                    raise ValueError(self.event_type)
                data: Any = json.loads(self.data_json)
                if self.body:
                    data = data.get("data") if isinstance(data, dict) else None
                envelope = te.envelope(id=self.event_id, type=self.event_type)
                json_format.ParseDict(data or {}, envelope.data, ignore_unknown_fields=True)  # type: ignore[attr-defined]
                envelope.occurred_at.FromDatetime(self.occurred_at)  # type: ignore[attr-defined]
                self._activation = te.env.Activation({"event": envelope})
            except (ValueError, TypeError, json_format.ParseError) as exc:
                log.warning("filter: event %s cannot be read: %s", self.event_id, exc)
                self._failed = True
        return self._activation


def evaluate(program: Any, view: EventView) -> bool | None:
    """True/False, or None when the filter fails at run time for this event."""
    activation = view.activation()
    if activation is None:
        return None
    try:
        # An error evaluates to a value of type ERROR (its message as a str):
        # only a bool is an answer.
        value = program.eval(activation).value()
    except Exception:  # cel-cpp raises RuntimeError; any failure is "no match"
        return None
    return value if isinstance(value, bool) else None


class _Counts:
    """Per configuration: events skipped by the filter and evaluation errors (bounded)."""

    def __init__(self, configs: int) -> None:
        self._configs = configs
        self._counts: OrderedDict[str, list[int]] = OrderedDict()
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, stats: dict[str, list[int]], first_error: dict[str, str]) -> None:
        """Add one fan-out's counts: config id -> [skipped, errors] (one lock for all)."""
        now = time.monotonic()
        warn: list[tuple[str, str, int]] = []
        with self._lock:
            counts = self._counts
            for config_id, (skipped, errors) in stats.items():
                entry = counts.get(config_id)
                if entry is None:
                    entry = counts[config_id] = [0, 0]
                    while len(counts) > self._configs:
                        old, _ = counts.popitem(last=False)
                        self._logged.pop(old, None)
                else:
                    counts.move_to_end(config_id)
                entry[0] += skipped
                if errors:
                    entry[1] += errors
                    last = self._logged.get(config_id)
                    if last is None or now - last >= _LOG_EVERY_SECONDS:
                        self._logged[config_id] = now
                        warn.append((config_id, first_error.get(config_id, ""), entry[1]))
        for config_id, event_id, total in warn:
            log.warning(
                "filter of webhook configuration %s failed at run time for event %s "
                "(not delivered; %d such events so far in this process)",
                config_id,
                event_id,
                total,
            )

    def snapshot(self) -> list[tuple[str, int, int]]:
        with self._lock:
            return [(cid, s, e) for cid, (s, e) in self._counts.items()]


_COUNTS = _Counts(COUNTED_CONFIGS)


def counts() -> list[tuple[str, int, int]]:
    """(config id, events skipped by its filter, evaluation errors) in this process."""
    return _COUNTS.snapshot()


class Matcher:
    """Filters for one fan-out (one publish batch): which configurations accept an event.

    ``rejected`` is asked once per event with the configurations that type
    matching let through and that have a filter; ``flush`` adds what it
    counted to the process's counts.
    """

    __slots__ = ("_first_error", "_stats")

    def __init__(self) -> None:
        self._stats: dict[str, list[int]] = {}  # config id -> [skipped, errors]
        self._first_error: dict[str, str] = {}  # config id -> an event it failed on

    def rejected(self, view: EventView, members: Sequence[tuple[str, str]]) -> set[str]:
        """The config ids among ``members`` ((config id, filter) pairs) whose filter
        does not accept the event."""
        accepted: set[str] = set()
        activation = view.activation()
        if activation is not None:
            for chunk in GROUPS.chunks(tuple(members), view.event_type):
                values: Any = None
                if chunk.program is not None:
                    try:
                        values = chunk.program.eval(activation).plain_value()
                    except Exception:  # cel-cpp raises RuntimeError; fall back below
                        values = None
                if isinstance(values, list) and len(values) == len(chunk.members):
                    for (config_id, _), value in zip(chunk.members, values, strict=True):
                        if value is True:
                            accepted.add(config_id)
                        elif value is not False:
                            self._error(config_id, view)
                    continue
                # An error in one filter makes the whole list an error: one by one.
                for config_id, expression in chunk.members:
                    ok = evaluate(PROGRAMS.program(expression, view.event_type), view)
                    if ok:
                        accepted.add(config_id)
                    elif ok is None:
                        self._error(config_id, view)
        else:
            for config_id, _ in members:
                self._error(config_id, view)
        rejected = {cid for cid, _ in members if cid not in accepted}
        for config_id in rejected:
            self._stat(config_id)[0] += 1
        return rejected

    def accepts(self, config_id: str, expression: str, view: EventView) -> bool:
        """Whether one configuration's filter accepts the event."""
        return not self.rejected(view, [(config_id, expression)])

    def _stat(self, config_id: str) -> list[int]:
        stats = self._stats.get(config_id)
        if stats is None:
            stats = self._stats[config_id] = [0, 0]
        return stats

    def _error(self, config_id: str, view: EventView) -> None:
        self._stat(config_id)[1] += 1
        self._first_error.setdefault(config_id, view.event_id)

    def flush(self) -> None:
        if self._stats:
            _COUNTS.add(self._stats, self._first_error)
        self._stats = {}
        self._first_error = {}


def judge(expression: str, stored: Sequence[StoredEvent]) -> list[bool | None]:
    """Per stored event: whether ``expression`` accepts it (None: it failed at run
    time; False also for a type it does not type-check against)."""
    answers: list[bool | None] = []
    for e in stored:
        program = PROGRAMS.program(expression, e.event_type)
        if program is NOT_CHECKED:
            answers.append(False)
            continue
        view = EventView(e.event_id, e.event_type, e.occurred_at, e.payload, body=True)
        answers.append(evaluate(program, view))
    return answers


def accepts_stored(expression: str, stored: Sequence[StoredEvent]) -> list[int]:
    """The ids of the stored deliveries whose events ``expression`` accepts (retry, replay)."""
    return [e.id for e, ok in zip(stored, judge(expression, stored), strict=True) if ok]

"""Payload filters: a configuration's CEL expression, checked at PUT and run at fan-out.

A filter is a Common Expression Language expression over ``event``:
``event.id`` and ``event.type`` (strings), ``event.occurred_at`` (a
timestamp) and ``event.data``, the typed payload message of the event's type
(``payloads.proto``). It is compiled by cel-cpp (``cel-expr-python``, see
docs/decisions.md, issue 21) against one *envelope* message per catalog type
(``webhooks.filters.RewardClaimedEvent {id, type, occurred_at, data:
webhooks.v1.RewardClaimed}``, built here at import time in a descriptor pool
of its own), so the type checker knows every field: ``event.data.points >
100`` is an int64 comparison, ``event.data.pointz`` or ``points > 'a'`` is
a compile error.

- :func:`check` (PUT and the dry run): the violations of a filter for a
  configuration's patterns, on the field ``filter``: too long, too costly
  (comprehension macros), does not parse, nests too deep, is not a boolean,
  or type-checks against none of the subscribed types (the errors say
  where: line and column, and why).
- :class:`Matcher` (fan-out): per event, one activation built lazily (the
  payload parsed once into its message) shared by every configuration of
  the organisation; the organisation's filters for the event's type
  compiled once into combined programs (one list expression per 32
  filters), kept in a cache bounded by their estimated compiled size
  (:data:`GROUP_CACHE_BYTES`); single programs by (filter text, type) for
  the fallback, the dry run, retry and replay (:data:`CACHE_BYTES`). An
  event of a type the filter does not type-check against does not match;
  an evaluation error (a division by zero, …) does not match either and is
  counted (:func:`counts`, exposed as
  ``webhooks_filter_events_total`` by observability/metrics.py, and a
  warning at most once a minute per configuration).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import cel_expr_python.cel as cel
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from sqlalchemy.engine import Engine

from webhooks.v1 import payloads_pb2
from webhooks_service.config import Settings
from webhooks_service.core import catalog, payloads
from webhooks_service.domain import utcnow
from webhooks_service.errors import FieldViolation, InvalidArgument
from webhooks_service.storage import db
from webhooks_service.storage.recent_events import StoredEvent, recent_events

__all__ = [
    "CACHE_BYTES",
    "GROUP_CACHE_BYTES",
    "MAX_COMPREHENSIONS",
    "MAX_FILTER_LENGTH",
    "MAX_NESTING",
    "DryRun",
    "EventView",
    "Match",
    "Matcher",
    "accepts_stored",
    "check",
    "counts",
    "dry_run",
    "evaluate",
    "subscribed_types",
]

log = logging.getLogger(__name__)

FIELD = "filter"
MAX_FILTER_LENGTH = 1024
MAX_COMPREHENSIONS = 4
MAX_NESTING = 32  # cel-cpp's parser refuses deeper expressions itself
CACHE_BYTES = 32 << 20  # compiled (filter, type) programs per process, estimated size
GROUP_CACHE_BYTES = 64 << 20  # the organisations' combined programs, estimated size
COUNTED_CONFIGS = 10_000  # configurations whose skip/error counts are kept
_LOG_EVERY_SECONDS = 60.0
_PACKAGE = "webhooks.filters"
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


# --- the environment: one envelope message and one cel.Env per catalog type ---


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in added:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        pool.Add(proto)
        added.add(fd.name)

    add(payloads_pb2.DESCRIPTOR)
    envelopes = descriptor_pb2.FileDescriptorProto(
        name="webhooks_service/filters.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", payloads_pb2.DESCRIPTOR.name],
    )
    fdp = descriptor_pb2.FieldDescriptorProto
    for payload in sorted({t.payload for t in catalog.TYPES}):
        message = envelopes.message_type.add(name=_envelope_name(payload).rsplit(".", 1)[1])
        for number, (name, kind, type_name) in enumerate(
            (
                ("id", fdp.TYPE_STRING, ""),
                ("type", fdp.TYPE_STRING, ""),
                ("occurred_at", fdp.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
                ("data", fdp.TYPE_MESSAGE, "." + payload),
            ),
            start=1,
        ):
            field = message.field.add(name=name, number=number, type=kind, label=fdp.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
    pool.Add(envelopes)
    return pool


def _envelope_name(payload: str) -> str:
    return f"{_PACKAGE}.{payload.rsplit('.', 1)[1]}Event"


_POOL = _build_pool()


@dataclass(frozen=True, slots=True)
class _TypeEnv:
    env: Any  # cel.Env
    envelope: type[Message]
    payload: type[Message]


@cache
def _type_env(event_type: str) -> _TypeEnv | None:
    info = catalog.info(event_type)
    if info is None:
        return None
    name = _envelope_name(info.payload)
    env = cel.NewEnv(_POOL, variables={"event": cel.Type(name)})
    return _TypeEnv(
        env,
        message_factory.GetMessageClass(_POOL.FindMessageTypeByName(name)),
        message_factory.GetMessageClass(_POOL.FindMessageTypeByName(info.payload)),
    )


# --- checking (PUT, dry run) ---


def subscribed_types(patterns: Iterable[str]) -> list[str]:
    """The catalog types a configuration's patterns cover, in catalog order."""
    patterns = tuple(patterns)
    return [t for t in catalog.EVENT_TYPES if catalog.matches_any(patterns, t)]


_ERROR_LINE = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): (.*)")


def _explain(exc: Exception) -> str:
    """cel-cpp's error text in the API's voice: ``line 1, column 12: …``."""
    text = str(exc)
    if "recursion" in text.lower():
        return f"nests deeper than {MAX_NESTING} levels"
    found: list[str] = []
    for line in text.splitlines():
        m = _ERROR_LINE.search(line)
        if m is None:
            continue
        row, col, why = m.groups()
        why = why.removesuffix(" [INVALID_ARGUMENT]").strip()
        where = f"line {row}, column {col}: " if int(row) > 0 else ""
        found.append(where + why)
    return "; ".join(dict.fromkeys(found)) or text.split("\n", 1)[0]


def _code_only(expression: str) -> str:
    """The expression with the contents of its string and bytes literals blanked."""
    out: list[str] = []
    i, n = 0, len(expression)
    while i < n:
        c = expression[i]
        if c in "'\"":
            raw = i > 0 and expression[i - 1] in "rR"
            quote = expression[i : i + 3] if expression[i : i + 3] == c * 3 else c
            j = i + len(quote)
            while j < n and not expression.startswith(quote, j):
                j += 2 if expression[j] == "\\" and not raw else 1
            out.append(quote + " " * (min(j, n) - i - len(quote)) + quote)
            i = j + len(quote)
            continue
        out.append(c)
        i += 1
    return "".join(out)


_MACRO_CALL = re.compile(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _cost_problem(expression: str) -> str | None:
    """More than MAX_COMPREHENSIONS macros, or one inside another (quadratic), is refused."""
    code = _code_only(expression)
    spans: list[tuple[int, int]] = []
    for m in _MACRO_CALL.finditer(code):
        if m.group(1) not in _MACROS:
            continue
        start = m.end() - 1
        depth, end = 0, len(code)
        for k in range(start, len(code)):
            if code[k] == "(":
                depth += 1
            elif code[k] == ")":
                depth -= 1
                if depth == 0:
                    end = k
                    break
        spans.append((start, end))
    if len(spans) > MAX_COMPREHENSIONS:
        return (
            f"too costly: {len(spans)} comprehension macros (all, exists, exists_one, map, "
            f"filter); at most {MAX_COMPREHENSIONS}"
        )
    for a_start, a_end in spans:
        for b_start, _ in spans:
            if a_start < b_start < a_end:
                return (
                    "too costly: a comprehension macro (all, exists, exists_one, map, filter) "
                    "inside another; its cost grows with the product of the lists' sizes"
                )
    return None


def _compile(expression: str, event_type: str) -> Any:
    """The program for one type; raises RuntimeError (cel-cpp's message) or TypeError."""
    te = _type_env(event_type)
    if te is None:
        raise RuntimeError(f"unknown event type {event_type}")
    program = te.env.compile(expression)
    returns = program.return_type()
    if returns != cel.Type.BOOL and returns != cel.Type.DYN:
        raise TypeError(f"must be a boolean expression; this one is of type {returns.name()}")
    return program


def check(expression: str, patterns: Sequence[str]) -> list[FieldViolation]:
    """Why ``expression`` cannot be the filter of a configuration of ``patterns`` (none if it can).

    It must type-check against at least one subscribed type; for the others
    it never matches (a field they lack cannot be compared).
    """
    if not expression:
        return []
    if len(expression) > MAX_FILTER_LENGTH:
        return [
            FieldViolation(FIELD, f"at most {MAX_FILTER_LENGTH} characters (got {len(expression)})")
        ]
    if not expression.strip():
        return [FieldViolation(FIELD, "blank; leave it empty to receive every event")]
    problem = _cost_problem(expression)
    if problem is not None:
        return [FieldViolation(FIELD, problem)]
    types = subscribed_types(patterns)
    if not types:
        return []  # the event types are refused on their own
    errors: list[tuple[str, str]] = []
    for event_type in types:
        try:
            _compile(expression, event_type)
            return []
        except (RuntimeError, TypeError) as exc:
            reason = str(exc) if isinstance(exc, TypeError) else _explain(exc)
            if isinstance(exc, TypeError) or "Syntax error" in reason or "nests" in reason:
                return [FieldViolation(FIELD, reason)]  # the same for every type
            errors.append((event_type, reason))
    # A mismatch where the field exists says more than "no such field" elsewhere.
    errors.sort(key=lambda e: e[1].find("undefined field") >= 0)
    if len(errors) == 1:
        return [FieldViolation(FIELD, f"{errors[0][1]} ({errors[0][0]})")]
    shown = "; ".join(f"{t}: {why}" for t, why in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return [
        FieldViolation(FIELD, f"type-checks against none of the subscribed types: {shown}{more}")
    ]


# --- evaluation ---


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
            te = _type_env(self.event_type)
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


_NOT_CHECKED = object()  # the filter does not type-check against this event type


def program_bytes(expression: str) -> int:
    """What a compiled program of ``expression`` holds in cel-cpp, roughly: measured
    about 5.4 KB for a 70-character filter (an AST node per few characters)."""
    return 1024 + 80 * len(expression)


class _Cache:
    """Compiled programs by (filter text, event type), bounded by their estimated
    size (:func:`program_bytes`): CACHE_BYTES.

    Shared by every configuration with the same text. A hit is one dict read
    without the lock (atomic in CPython); the oldest entries are evicted first
    (insertion order), and an evicted program is compiled again when next
    needed (about 40 µs).
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._programs: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def program(self, expression: str, event_type: str) -> Any:
        key = (expression, event_type)
        program = self._programs.get(key)
        if program is not None:
            return program
        try:
            program = _compile(expression, event_type)
        except (RuntimeError, TypeError):
            program = _NOT_CHECKED
        with self._lock:
            if key not in self._programs:
                self._programs[key] = program
                self._bytes += program_bytes(expression)
            while self._bytes > self._max_bytes and len(self._programs) > 1:
                (old, _), _ = self._programs.popitem(last=False)
                self._bytes -= program_bytes(old)
        return program

    def __len__(self) -> int:
        return len(self._programs)


_CACHE = _Cache(CACHE_BYTES)


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


@functools.lru_cache(maxsize=16384)
def _type_checks(expression: str, event_type: str) -> bool:
    """Whether ``expression`` compiles for ``event_type`` (the program is not kept)."""
    try:
        _compile(expression, event_type)
    except (RuntimeError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Up to GROUP_SIZE filters of one organisation compiled as one list expression."""

    members: tuple[tuple[str, str], ...]  # (config id, filter), in list order
    program: Any  # cel program answering [bool, …], or None (compile failed)


class _GroupCache:
    """The combined programs of organisations' filter sets, bounded in estimated bytes.

    One CEL evaluation costs about 2 µs of binding overhead whatever it does,
    so the fan-out evaluates an organisation's filters for an event type as
    one list expression ``[(f1), (f2), …]`` per GROUP_SIZE filters (one
    evaluation instead of a hundred). Keyed by the (config id, filter) pairs
    and the type: a changed filter is a new key. At most GROUP_CACHE_BYTES
    of estimated compiled size (:func:`program_bytes`) is kept, oldest
    evicted first.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._groups: OrderedDict[tuple[Any, ...], tuple[tuple[_Chunk, ...], int]] = OrderedDict()
        self._lock = threading.Lock()

    def chunks(self, members: tuple[tuple[str, str], ...], event_type: str) -> tuple[_Chunk, ...]:
        key = (event_type, *members)
        found = self._groups.get(key)
        if found is not None:
            return found[0]
        checked = [m for m in members if _type_checks(m[1], event_type)]
        chunks: list[_Chunk] = []
        for i in range(0, len(checked), GROUP_SIZE):
            part = tuple(checked[i : i + GROUP_SIZE])
            # Each filter on lines of its own: a trailing // comment stays its own.
            source = "[" + ", ".join(f"(\n{expr}\n)" for _, expr in part) + "]"
            try:
                program = _type_env(event_type).env.compile(source)  # type: ignore[union-attr]
            except RuntimeError:
                program = None
            chunks.append(_Chunk(part, program))
        size = sum(program_bytes(expr) + len(cid) for cid, expr in members)
        with self._lock:
            self._groups[key] = (tuple(chunks), size)
            self._bytes += size
            while self._bytes > self._max_bytes and len(self._groups) > 1:
                _, (_, dropped) = self._groups.popitem(last=False)
                self._bytes -= dropped
        return tuple(chunks)


GROUP_SIZE = 32
_GROUPS = _GroupCache(GROUP_CACHE_BYTES)


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
            for chunk in _GROUPS.chunks(tuple(members), view.event_type):
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
                    ok = evaluate(_CACHE.program(expression, view.event_type), view)
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


def _judge(expression: str, stored: Sequence[StoredEvent]) -> list[bool | None]:
    """Per stored event: whether ``expression`` accepts it (None: it failed at run
    time; False also for a type it does not type-check against)."""
    answers: list[bool | None] = []
    for e in stored:
        program = _CACHE.program(expression, e.event_type)
        if program is _NOT_CHECKED:
            answers.append(False)
            continue
        view = EventView(e.event_id, e.event_type, e.occurred_at, e.payload, body=True)
        answers.append(evaluate(program, view))
    return answers


def accepts_stored(expression: str, stored: Sequence[StoredEvent]) -> list[int]:
    """The ids of the stored deliveries whose events ``expression`` accepts (retry, replay)."""
    return [e.id for e, ok in zip(stored, _judge(expression, stored), strict=True) if ok]


# --- the dry run (TestWebhookFilter) ---

DRY_RUN_DEFAULT = 200
DRY_RUN_MAX = 1000
MAX_MATCHES_RETURNED = DRY_RUN_MAX


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
    program = _CACHE.program(expression, event_type)
    if program is _NOT_CHECKED:
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
    answers = _judge(expression, events)
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

"""The delivery log use case: validated, keyset-paginated ListDeliveryLogs.

Page tokens carry the id of the last attempt shown, sealed and bound to the
organisation and the filters (see ``core/pagetokens.py``). Because pages
continue strictly below the last id, rows written while a client walks the
log (always with higher ids) never shift or repeat entries of the walk.

A page is bounded twice: ``page_size`` entries, and ``max_bytes`` (the
operator's ``log_page_max_bytes``, a few MiB) of entries, whichever comes
first; a page cut by the budget has a ``next_page_token`` like any other.
The BASIC view leaves the bodies out (and so fits ``page_size`` entries in
nearly any budget).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from webhooks_service.core import catalog, ids, listing, pagetokens
from webhooks_service.core.ping import PING_TYPE  # test events, outside the catalog
from webhooks_service.core.server_keys import keyring
from webhooks_service.domain import Outcome, StatusClass
from webhooks_service.errors import FieldViolation, InvalidArgument
from webhooks_service.storage import db
from webhooks_service.storage import logs as store
from webhooks_service.storage.logs import LogFilters, LogRow, Position

__all__ = [
    "DEFAULT_MAX_PAGE_BYTES",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "OUTCOMES",
    "LogFilters",
    "LogRow",
    "list_logs",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = listing.MAX_PAGE_SIZE
DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024
_MAX_POSITION = 2**63 - 1
OUTCOMES = tuple(o.value for o in Outcome)
STATUS_CLASSES = tuple(c.value for c in StatusClass)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def resolve_event_type(pattern: str) -> tuple[str, ...] | None:
    """The types an ``event_type`` filter stands for: () for any ("*" or empty), the
    catalog types of a category for "category.*" (``webhook.ping`` in ``webhook.*``),
    the type itself for a known type; None if it is none of these."""
    if pattern in ("", catalog.WILDCARD):
        return ()
    if pattern == PING_TYPE or catalog.is_known_type(pattern):
        return (pattern,)
    if pattern.endswith(".*") and pattern[:-2] in catalog.categories():
        return tuple(t.name for t in catalog.TYPES if t.name.startswith(pattern[:-1]))
    return None


def _validate(page_size: int, filters: LogFilters) -> list[FieldViolation]:
    problems = []
    size_problem = listing.page_size_problem(page_size, DEFAULT_PAGE_SIZE)
    if size_problem is not None:
        problems.append(size_problem)
    if filters.outcome and filters.outcome not in OUTCOMES:
        problems.append(FieldViolation("outcome", f"unknown outcome {filters.outcome!r}"))
    if filters.status_class and filters.status_class not in STATUS_CLASSES:
        problems.append(
            FieldViolation("status_class", f"unknown status class {filters.status_class!r}")
        )
    if resolve_event_type(filters.event_type) is None:
        patterns = [*catalog.all_types(), *(f"{c}.*" for c in catalog.categories()), "*"]
        problems.append(
            FieldViolation(
                "event_type",
                f"{filters.event_type!r} is not a catalog event type, a category wildcard "
                f"such as reward.* or *: {catalog.did_you_mean(filters.event_type, patterns)}",
            )
        )
    if filters.since and filters.until and filters.until <= filters.since:
        problems.append(
            FieldViolation(
                "until",
                f"until ({filters.until.isoformat()}) must be after since "
                f"({filters.since.isoformat()})",
            )
        )
    # The one id rule (core/ids.py): a malformed id is an error, a well-formed
    # one that matches nothing an empty page.
    if filters.config_id:
        shape = "whc_ followed by letters and digits, e.g. whc_3f2a…"
        problem = ids.id_problem(filters.config_id, ids.CONFIG_ID, shape)
        if problem:
            problems.append(FieldViolation("config_id", problem))
    if filters.event_id:
        problem = ids.event_id_problem(filters.event_id)
        if problem:
            problems.append(FieldViolation("event_id", problem))
    return problems


def list_logs(
    engine: Engine,
    organisation_id: str,
    *,
    page_size: int = 0,
    page_token: str = "",
    filters: LogFilters | None = None,
    full: bool = True,
    max_bytes: int = DEFAULT_MAX_PAGE_BYTES,
) -> tuple[list[LogRow], str]:
    """One page of the organisation's attempts, newest first, and the next page's token.

    ``full``: with request and response bodies (the FULL view); ``max_bytes``:
    the page's byte budget (see module doc)."""
    filters = filters or LogFilters()
    problems = _validate(page_size, filters)
    if problems:
        raise InvalidArgument("invalid ListDeliveryLogs request", problems)
    size = page_size or DEFAULT_PAGE_SIZE
    # The view is not part of the binding: a client may switch views mid-walk.
    bound = pagetokens.binding("logs", organisation_id, *filters.key())
    key = keyring(engine).tokens
    before: Position | None = None
    if page_token:
        before = _position(pagetokens.decode(page_token, bound, key), filters.by_time)
    types = resolve_event_type(filters.event_type) or ()
    query = dataclasses.replace(filters, event_type=types[0] if len(types) == 1 else "")
    if len(types) > 1:
        query = dataclasses.replace(query, event_types=types)
    with db.read_transaction(engine) as conn:
        rows, cut = store.bounded_page(
            conn,
            organisation_id,
            query,
            before_id=before,
            limit=size + 1,
            max_bytes=max_bytes,
            full=full,
        )
    next_token = ""
    if len(rows) > size or cut:
        rows = rows[:size]
        last = rows[-1]
        position: object = last.id
        if query.by_time:
            position = [_micros(last.attempted_at), last.id]
        next_token = pagetokens.encode(position, bound, key)
    return rows, next_token


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // datetime.resolution


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_POSITION


def _position(decoded: object, by_time: bool) -> Position:
    """A decoded token's keyset position, range-checked (an id, or [micros, id])."""
    if not by_time:
        if not _is_id(decoded):
            raise pagetokens.invalid()
        return decoded  # type: ignore[return-value]
    if not isinstance(decoded, list) or len(decoded) != 2:
        raise pagetokens.invalid()
    micros, last_id = decoded
    if not _is_id(last_id) or not _is_id(micros) or micros > _MAX_MICROS:
        raise pagetokens.invalid()
    return _EPOCH + micros * datetime.resolution, last_id


_MAX_MICROS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // datetime.resolution

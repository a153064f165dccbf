"""Structured logs: one JSON object per line, and the per-attempt delivery line.

``configure_logging(level, fmt)`` is what ``webhooks serve`` / ``worker`` /
``run`` call. ``fmt`` is the ``log_format`` setting: ``json`` (one object per
line: ``ts``, ``level``, ``logger``, ``message`` and every ``extra`` field),
``text`` (for people), or ``auto`` (text when stderr is a terminal, else
json: what a log shipper reads is machine-readable without configuration).

Every delivery attempt gets one line (``log_attempts``, called by the worker
after the attempt is recorded) with ``event_id``, ``config_id``,
``delivery_id``, ``attempt``, ``outcome``, ``status_code``, ``duration_ms``
and the error: DEBUG when delivered (high volume, the delivery log has it),
INFO when a retry is scheduled, WARNING when the delivery failed for good or
is dead. Never request bodies, response bodies, URLs (their query strings may
carry tokens) or secrets.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from webhooks_service.domain import Outcome

if TYPE_CHECKING:
    from webhooks_service.domain import FinishedAttempt

ATTEMPT_LOGGER = "webhooks_service.delivery.attempts"
_attempts_log = logging.getLogger(ATTEMPT_LOGGER)

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_LEVEL_BY_OUTCOME = {
    Outcome.DELIVERED: logging.DEBUG,
    Outcome.RETRY_SCHEDULED: logging.INFO,
    Outcome.FAILED: logging.WARNING,
    Outcome.DEAD: logging.WARNING,
}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", **extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def resolve_format(fmt: str) -> str:
    if fmt == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return fmt


def configure_logging(level: str, fmt: str = "auto") -> None:
    """Root logging to stderr in the chosen format (replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if resolve_format(fmt) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def log_attempts(
    batch: Sequence[FinishedAttempt], public_id: Callable[[int], str] | None = None
) -> None:
    """One line per recorded attempt, at the outcome's level (see module doc).

    ``public_id`` turns a delivery's key into the opaque ``dlv_…`` id tenants
    see; without it (no database at hand) the line has ``delivery_pk``."""
    log = _attempts_log
    if not log.isEnabledFor(logging.DEBUG) and all(f.outcome is Outcome.DELIVERED for f in batch):
        return  # the common case at INFO: nothing to format
    for f in batch:
        level = _LEVEL_BY_OUTCOME.get(f.outcome, logging.WARNING)
        if not log.isEnabledFor(level):
            continue
        fields: dict[str, Any] = {
            "event_id": f.event_id,
            "event_type": f.event_type,
            "organisation_id": f.organisation_id,
            "config_id": f.config_id,
            **(
                {"delivery_id": public_id(f.delivery_id)}
                if public_id is not None
                else {"delivery_pk": f.delivery_id}
            ),
            "attempt": f.attempt,
            "outcome": f.outcome,
            "status_code": f.response_status_code,
            "duration_ms": f.duration_ms,
        }
        if f.error:
            fields["error"] = f.error
        if f.next_attempt_at is not None:
            fields["next_attempt_at"] = f.next_attempt_at.isoformat()
        detail = f.error or f"HTTP {f.response_status_code}"
        log.log(
            level,
            "delivery %s attempt %d to %s: %s (%s)",
            fields.get("delivery_id", f"#{f.delivery_id}"),
            f.attempt,
            f.config_id,
            f.outcome,
            detail,
            extra=fields,
        )

"""What happens after an attempt: the outcome policy, as data.

The worker hands every attempt's result to ``RetryPolicy.decide`` and gets a
``RetryDecision`` back; it never branches on status codes itself. The rules
(brief §3):

* 2xx: delivered.
* 5xx, 3xx (redirects are not followed), connection errors, timeouts: retry.
* 408 and 429: back-pressure; retry, but no sooner than ``Retry-After``.
* 410 Gone: failed for good, and the endpoint is disabled.
* any other 4xx (and 1xx, or anything unexpected below 200): failed, no retry.
* a target the guard refuses: failed, no retry.
* a retryable failure after the schedule is exhausted: dead.

The delay before retry *n* (n = 1 after the first attempt) is
``schedule[n-1]`` (the operator's capped exponential schedule, e.g.
5 s … 24 h), stretched by a random jitter of up to ``jitter`` (10 %) so that
endpoints recovering from an outage are not hit by a synchronised wave.
Time comes from the caller (``now``) and randomness from an injectable
``random.Random``, so tests assert exact timings without sleeping.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from webhooks_service.domain import Outcome

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "AttemptResult",
    "ErrorKind",
    "Outcome",
    "RetryDecision",
    "RetryPolicy",
    "parse_retry_after",
]

# Retry-After values beyond this are clamped: a receiver cannot park a
# delivery for longer than the whole default schedule spans.
MAX_RETRY_AFTER_SECONDS = 3 * 24 * 3600.0


class ErrorKind(enum.StrEnum):
    """Why an attempt got no usable response."""

    CONNECT = "connect"  # refused, reset, DNS failure, TLS failure
    TIMEOUT = "timeout"
    BLOCKED = "blocked"  # the target guard refused every address
    INVALID_URL = "invalid_url"  # the URL cannot be requested at all
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt produced (``status_code`` 0 when no response)."""

    status_code: int = 0
    error: str = ""
    error_kind: ErrorKind | None = None
    response_body: str = ""
    response_body_truncated: bool = False
    duration_ms: int = 0
    retry_after: str | None = None  # the raw Retry-After header, if any
    # The response headers as received, up to the transport's caps.
    response_headers: tuple[tuple[str, str], ...] = ()
    response_headers_truncated: bool = False


@dataclass(frozen=True, slots=True)
class RetryDecision:
    outcome: Outcome
    next_attempt_at: datetime | None = None
    disable_endpoint: bool = False
    disabled_reason: str = ""


class _Action(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    RETRY_AFTER = "retry_after"  # retry, honouring Retry-After
    FAIL = "fail"
    DISABLE = "disable"  # fail and disable the endpoint


# The table: exact status codes first, then status classes (code // 100).
_BY_STATUS: dict[int, _Action] = {
    408: _Action.RETRY_AFTER,
    429: _Action.RETRY_AFTER,
    410: _Action.DISABLE,
}
_BY_CLASS: dict[int, _Action] = {
    2: _Action.DELIVERED,
    3: _Action.RETRY,
    4: _Action.FAIL,
    5: _Action.RETRY,
}
_BY_ERROR: dict[ErrorKind, _Action] = {
    ErrorKind.CONNECT: _Action.RETRY,
    ErrorKind.TIMEOUT: _Action.RETRY,
    ErrorKind.OTHER: _Action.RETRY,
    ErrorKind.BLOCKED: _Action.FAIL,
    ErrorKind.INVALID_URL: _Action.FAIL,
}


def _action(result: AttemptResult) -> _Action:
    if result.status_code == 0:
        return _BY_ERROR[result.error_kind or ErrorKind.OTHER]
    return _BY_STATUS.get(
        result.status_code, _BY_CLASS.get(result.status_code // 100, _Action.FAIL)
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP date).

    None when absent or unparseable; never negative; clamped to
    ``MAX_RETRY_AFTER_SECONDS``.
    """
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class RetryPolicy:
    """Turns attempt results into decisions under one retry schedule."""

    def __init__(
        self,
        schedule: tuple[float, ...],
        *,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not schedule:
            raise ValueError("retry schedule must not be empty")
        self.schedule = schedule
        self.jitter = jitter
        self._rng = rng or random.Random()

    @property
    def max_attempts(self) -> int:
        """First attempt plus one per scheduled retry."""
        return len(self.schedule) + 1

    def backoff(self, attempt: int) -> float:
        """Seconds before the retry that follows attempt ``attempt`` (1-based), jittered."""
        base = self.schedule[attempt - 1]
        return base * (1.0 + self.jitter * self._rng.random())

    def decide(self, result: AttemptResult, attempt: int, now: datetime) -> RetryDecision:
        """The decision after attempt number ``attempt`` (1-based) ended at ``now``."""
        action = _action(result)
        if action is _Action.DELIVERED:
            return RetryDecision(Outcome.DELIVERED)
        if action is _Action.FAIL:
            return RetryDecision(Outcome.FAILED)
        if action is _Action.DISABLE:
            return RetryDecision(
                Outcome.FAILED,
                disable_endpoint=True,
                disabled_reason=f"the endpoint answered {result.status_code} Gone",
            )
        if attempt >= self.max_attempts:
            return RetryDecision(Outcome.DEAD)
        delay = self.backoff(attempt)
        if action is _Action.RETRY_AFTER:
            wait = parse_retry_after(result.retry_after, now)
            if wait is not None:
                delay = max(delay, wait)
        return RetryDecision(
            Outcome.RETRY_SCHEDULED, next_attempt_at=now + timedelta(seconds=delay)
        )

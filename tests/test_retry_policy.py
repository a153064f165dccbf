"""The outcome policy, with an injected clock and random source: exact timings,
no sleeping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from webhooks_service.config_values import parse_schedule
from webhooks_service.delivery.retry_policy import (
    AttemptResult,
    ErrorKind,
    Outcome,
    RetryPolicy,
    parse_retry_after,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SCHEDULE = (5.0, 30.0, 120.0)


class Zero(random.Random):
    def random(self) -> float:
        return 0.0


class One(random.Random):
    def random(self) -> float:
        return 0.999999


def policy(rng: random.Random | None = None) -> RetryPolicy:
    return RetryPolicy(SCHEDULE, jitter=0.1, rng=rng or Zero())


def status(code: int, retry_after: str | None = None) -> AttemptResult:
    return AttemptResult(status_code=code, retry_after=retry_after)


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_2xx_is_delivered(code: int) -> None:
    assert policy().decide(status(code), 1, NOW).outcome is Outcome.DELIVERED


@pytest.mark.parametrize("code", [500, 502, 503, 599, 301, 302, 307, 308])
def test_5xx_and_3xx_retry_on_schedule(code: int) -> None:
    decision = policy().decide(status(code), 1, NOW)
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert decision.next_attempt_at == NOW + timedelta(seconds=5)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 409, 413, 422, 499])
def test_other_4xx_fail_for_good(code: int) -> None:
    decision = policy().decide(status(code), 1, NOW)
    assert decision.outcome is Outcome.FAILED
    assert decision.next_attempt_at is None and not decision.disable_endpoint


def test_410_fails_and_disables_the_endpoint() -> None:
    decision = policy().decide(status(410), 1, NOW)
    assert decision.outcome is Outcome.FAILED
    assert decision.disable_endpoint and "410" in decision.disabled_reason


@pytest.mark.parametrize("kind", [ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.OTHER])
def test_connection_errors_and_timeouts_retry(kind: ErrorKind) -> None:
    decision = policy().decide(AttemptResult(error="x", error_kind=kind), 2, NOW)
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert decision.next_attempt_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize("kind", [ErrorKind.BLOCKED, ErrorKind.INVALID_URL])
def test_refused_target_fails_without_retry(kind: ErrorKind) -> None:
    decision = policy().decide(AttemptResult(error="blocked", error_kind=kind), 1, NOW)
    assert decision.outcome is Outcome.FAILED


def test_schedule_then_dead() -> None:
    p = policy()
    delays = []
    for attempt in (1, 2, 3):
        d = p.decide(status(503), attempt, NOW)
        assert d.outcome is Outcome.RETRY_SCHEDULED
        assert d.next_attempt_at is not None
        delays.append((d.next_attempt_at - NOW).total_seconds())
    assert delays == [5.0, 30.0, 120.0]
    assert p.max_attempts == 4
    assert p.decide(status(503), 4, NOW).outcome is Outcome.DEAD


def test_jitter_only_stretches_up_to_ten_percent() -> None:
    low = policy(Zero()).decide(status(500), 3, NOW).next_attempt_at
    high = policy(One()).decide(status(500), 3, NOW).next_attempt_at
    assert low == NOW + timedelta(seconds=120)
    assert high is not None and NOW + timedelta(seconds=131) < high <= NOW + timedelta(seconds=132)


@pytest.mark.parametrize("code", [408, 429])
def test_retry_after_seconds_is_respected(code: int) -> None:
    decision = policy().decide(status(code, "90"), 1, NOW)
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert decision.next_attempt_at == NOW + timedelta(seconds=90)


def test_retry_after_http_date_is_respected() -> None:
    when = NOW + timedelta(minutes=10)
    decision = policy().decide(status(429, format_datetime(when, usegmt=True)), 1, NOW)
    assert decision.next_attempt_at == when


def test_retry_after_shorter_than_schedule_keeps_the_schedule() -> None:
    decision = policy().decide(status(429, "1"), 1, NOW)
    assert decision.next_attempt_at == NOW + timedelta(seconds=5)


def test_429_without_retry_after_uses_the_schedule_and_ends_dead() -> None:
    assert policy().decide(status(429), 2, NOW).next_attempt_at == NOW + timedelta(seconds=30)
    assert policy().decide(status(429, "5"), 4, NOW).outcome is Outcome.DEAD


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("garbage", NOW) is None
    assert parse_retry_after("120", NOW) == 120.0
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0
    assert parse_retry_after("99999999", NOW) == 3 * 24 * 3600


def test_default_schedule_spans_about_three_days() -> None:
    from webhooks_service.config import DEFAULT_RETRY_SCHEDULE

    total = sum(parse_schedule(DEFAULT_RETRY_SCHEDULE))
    assert 2 * 86400 < total < 4 * 86400

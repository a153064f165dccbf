"""Endpoint health: per-configuration attempt counters, kept on the hot path.

``record`` runs inside ``queue.finish_batch``'s transaction: the batch's
attempts are grouped by configuration in Python (a batch holds at most a few
hundred rows) and applied with ONE set-based upsert per batch into the
``endpoint_health`` table (the groups travel as one JSON parameter, like the
attempts themselves), so the cost is one statement per batch, not one per
attempt or per endpoint.

Per configuration it keeps ``attempts_total`` / ``successes_total`` /
``failures_total``, ``last_success_at``, ``last_error`` (+ ``_at``) and
``failing_since``: the first failure after the last success, cleared by a
success. Deliveries finished without an HTTP request (the endpoint was
disabled meanwhile) are not attempts and change nothing.

No deadlocks under concurrent finishes for one configuration (24 test
events at once, many workers): the counters live in their own table, whose
rows nothing else locks (publishing's foreign-key checks lock configuration
rows, admins update them), and one ``INSERT … ON CONFLICT DO UPDATE`` takes
each row's lock once, in configuration id order (the groups are sorted), so
two transactions finishing attempts for the same endpoints queue instead of
deadlocking.

The auto-disable decision (``failing_for_too_long`` + ``disable``) is a
periodic sweep in ``core/endpoint_health.py``, not part of this hot path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.domain import FinishedAttempt, Outcome
from webhooks_service.storage.models import EndpointHealth as HealthRow
from webhooks_service.storage.models import UTCDateTime, WebhookConfig, pg_time, sqlite_time

_T = cast(sa.Table, WebhookConfig.__table__)
_H = cast(sa.Table, HealthRow.__table__)

MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class EndpointHealth:
    """What ListWebhookConfigs shows about an endpoint's deliveries."""

    attempts: int = 0
    successes: int = 0
    failures: int = 0
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    failing_since: datetime | None = None


HEALTH_COLUMNS = (
    _H.c.attempts_total,
    _H.c.successes_total,
    _H.c.failures_total,
    _H.c.last_success_at,
    _H.c.last_error,
    _H.c.last_error_at,
    _H.c.failing_since,
)
# Select ``HEALTH_COLUMNS`` with configuration columns FROM this.
CONFIGS_WITH_HEALTH = _T.outerjoin(_H, _H.c.config_id == _T.c.id)


def health_from_row(r: Any) -> EndpointHealth:
    """The health part of a row selected with ``HEALTH_COLUMNS``."""
    return EndpointHealth(
        attempts=int(r.attempts_total or 0),
        successes=int(r.successes_total or 0),
        failures=int(r.failures_total or 0),
        last_success_at=r.last_success_at,
        last_error=r.last_error or "",
        last_error_at=r.last_error_at,
        failing_since=r.failing_since,
    )


def describe_failure(f: FinishedAttempt) -> str:
    """One line for ``last_error``: the transport error, or the HTTP status."""
    text = f.error or f"HTTP {f.response_status_code}"
    return text[:MAX_ERROR_LENGTH]


def summarise(finished: Sequence[FinishedAttempt]) -> list[dict[str, Any]]:
    """Per configuration: counts, latest success / error, and the failure run.

    ``had_success`` with ``fail_start``: the batch ends with failures after a
    success, so the run starts at ``fail_start``. ``had_success`` without it:
    the batch ends with a success, the run is over. Without ``had_success``:
    the run continues, or starts at ``fail_start``.
    """
    groups: dict[str, list[FinishedAttempt]] = {}
    for f in finished:
        if f.attempted:
            groups.setdefault(f.config_id, []).append(f)
    out: list[dict[str, Any]] = []
    for config_id in sorted(groups):
        items = sorted(groups[config_id], key=lambda f: f.attempted_at)
        successes = [f for f in items if f.outcome is Outcome.DELIVERED]
        failures = [f for f in items if f.outcome is not Outcome.DELIVERED]
        last_ok = successes[-1].attempted_at if successes else None
        run = [f for f in failures if last_ok is None or f.attempted_at > last_ok]
        last_fail = failures[-1] if failures else None
        out.append(
            {
                "config_id": config_id,
                "attempts": len(items),
                "successes": len(successes),
                "failures": len(failures),
                "last_success_at": last_ok,
                "last_error": describe_failure(last_fail) if last_fail else None,
                "last_error_at": last_fail.attempted_at if last_fail else None,
                "had_success": bool(successes),
                "fail_start": run[0].attempted_at if run else None,
            }
        )
    return out


_UPSERT_COLUMNS = """
        attempts_total = endpoint_health.attempts_total + excluded.attempts_total,
        successes_total = endpoint_health.successes_total + excluded.successes_total,
        failures_total = endpoint_health.failures_total + excluded.failures_total,
        last_success_at = COALESCE(excluded.last_success_at, endpoint_health.last_success_at),
        last_error = COALESCE(NULLIF(excluded.last_error, ''), endpoint_health.last_error),
        last_error_at = COALESCE(excluded.last_error_at, endpoint_health.last_error_at),
        failing_since = CASE WHEN {had_success} THEN excluded.failing_since
                             ELSE COALESCE(endpoint_health.failing_since,
                                           excluded.failing_since) END
"""

# One upsert per batch; rows in config id order, so row locks are taken in that order.
# ``failing_since`` of the inserted row is the batch's fail_start.
_PG_RECORD = sa.text(
    f"""
    INSERT INTO endpoint_health AS endpoint_health (
        config_id, attempts_total, successes_total, failures_total,
        last_success_at, last_error, last_error_at, failing_since)
    SELECT v.config_id, v.attempts, v.successes, v.failures, v.last_success_at,
           COALESCE(v.last_error, ''), v.last_error_at, v.fail_start
    FROM json_to_recordset(CAST(:groups AS json)) AS v(
            config_id text, attempts bigint, successes bigint, failures bigint,
            last_success_at timestamptz, last_error text, last_error_at timestamptz,
            had_success boolean, fail_start timestamptz)
    JOIN webhook_configs AS c ON c.id = v.config_id
    ORDER BY v.config_id
    ON CONFLICT (config_id) DO UPDATE SET
    {_UPSERT_COLUMNS.format(had_success="excluded.successes_total > 0")}
    """
)


def _j(name: str) -> str:
    return f"json_extract(j.value, '$.{name}')"


_SQLITE_RECORD = sa.text(
    f"""
    INSERT INTO endpoint_health (
        config_id, attempts_total, successes_total, failures_total,
        last_success_at, last_error, last_error_at, failing_since)
    SELECT {_j("config_id")}, {_j("attempts")}, {_j("successes")}, {_j("failures")},
           {_j("last_success_at")}, COALESCE({_j("last_error")}, ''), {_j("last_error_at")},
           {_j("fail_start")}
    FROM json_each(:groups) AS j
    JOIN webhook_configs AS c ON c.id = {_j("config_id")}
    WHERE true
    ON CONFLICT (config_id) DO UPDATE SET
    {_UPSERT_COLUMNS.format(had_success="excluded.successes_total > 0")}
    """
)


def record(conn: sa.Connection, finished: Sequence[FinishedAttempt]) -> None:
    """Fold a batch of recorded attempts into their configurations' health.

    Call inside the transaction that records the attempts. Attempts whose
    lease was lost are counted too (they did reach the endpoint).
    """
    groups = summarise(finished)
    if not groups:
        return
    sqlite = conn.dialect.name == "sqlite"
    stamp = sqlite_time if sqlite else pg_time
    for g in groups:
        for key in ("last_success_at", "last_error_at", "fail_start"):
            g[key] = stamp(g[key]) if g[key] is not None else None
    payload = json.dumps(groups, separators=(",", ":"))
    conn.execute(_SQLITE_RECORD if sqlite else _PG_RECORD, {"groups": payload})


def reset_failing(conn: sa.Connection, organisation_id: str, config_id: str) -> None:
    """Forget the current failure run (an admin re-enabled or re-pointed the endpoint)."""
    owned = sa.select(_T.c.id).where(_T.c.organisation_id == organisation_id, _T.c.id == config_id)
    conn.execute(
        sa.update(_H).where(_H.c.config_id.in_(owned.scalar_subquery())).values(failing_since=None)
    )


@dataclass(frozen=True)
class FailingEndpoint:
    id: str
    organisation_id: str
    failing_since: datetime
    last_error: str
    last_error_at: datetime | None


def failing_since_before(conn: sa.Connection, cutoff: datetime) -> list[FailingEndpoint]:
    """Enabled configurations failing since before ``cutoff`` (index on failing_since)."""
    rows = conn.execute(
        sa.select(
            _T.c.id, _T.c.organisation_id, _H.c.failing_since, _H.c.last_error, _H.c.last_error_at
        )
        .select_from(_H.join(_T, _T.c.id == _H.c.config_id))
        .where(_H.c.failing_since <= cutoff, _T.c.enabled.is_(True))
        .order_by(_H.c.failing_since)
    ).all()
    return [
        FailingEndpoint(r.id, r.organisation_id, r.failing_since, r.last_error, r.last_error_at)
        for r in rows
    ]


def disable(conn: sa.Connection, endpoint: FailingEndpoint, reason: str, *, now: datetime) -> bool:
    """Disable ``endpoint`` unless it changed meanwhile (a success, or an admin's Put)."""
    result = conn.execute(
        sa.update(_T)
        .where(
            _T.c.id == endpoint.id,
            _T.c.enabled.is_(True),
            sa.exists().where(
                _H.c.config_id == _T.c.id,
                _H.c.failing_since == sa.bindparam("since", endpoint.failing_since, UTCDateTime()),
            ),
        )
        .values(enabled=False, disabled_reason=reason[:500], updated_at=now)
    )
    return bool(result.rowcount)

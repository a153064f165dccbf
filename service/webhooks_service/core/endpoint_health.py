"""Auto-disabling endpoints that keep failing (a periodic sweep).

The counters and ``failing_since`` are kept by ``finish_batch`` on the hot
path (``storage/endpoint_health.py``); deciding to disable is a separate,
cheap sweep that ``webhooks serve`` / ``webhooks worker`` run every minute
next to the delivery worker, so the hot path never needs the setting or an
extra branch.

Rule: an enabled endpoint is disabled when its current run of failures
(``failing_since``: the first failure after the last success) has lasted at
least ``endpoint_failure_disable_after`` (default 5 days) AND it still failed
at the end of that period (``last_error_at >= failing_since + period``): every
attempt in the period failed. An endpoint that failed once and then received
nothing is not disabled for lack of traffic. ``0`` turns the feature off.
A 410 Gone disables at once (the retry policy, in ``finish_batch``).
Re-enabling is ``PutWebhookConfig`` with ``enabled = true``, which clears
the reason and the failure run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import operational
from webhooks_service.storage import db
from webhooks_service.storage import endpoint_health as store
from webhooks_service.storage.models import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SWEEP_INTERVAL_SECONDS = 60.0


def _period_text(seconds: float) -> str:
    if seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"


def disabled_reason(endpoint: store.FailingEndpoint, period: float) -> str:
    since = endpoint.failing_since.strftime("%Y-%m-%d %H:%M UTC")
    reason = f"every delivery attempt failed for {_period_text(period)} (since {since})"
    if endpoint.last_error:
        reason += f"; last error: {endpoint.last_error}"
    return reason


def disable_failing_endpoints(engine: Engine, settings: Settings, *, now: datetime) -> list[str]:
    """Disable the endpoints that failed for the whole period; their ids.

    One indexed read (``failing_since <= now - period``), then one guarded
    UPDATE per endpoint to disable: a success or an admin's Put in between
    leaves the endpoint alone.
    """
    period = settings.endpoint_failure_disable_after
    if period <= 0:
        return []
    span = timedelta(seconds=period)
    with db.write_transaction(engine) as conn:
        candidates = store.failing_since_before(conn, now - span)
        disabled: list[str] = []
        for endpoint in candidates:
            if endpoint.last_error_at is None or endpoint.last_error_at < (
                endpoint.failing_since + span
            ):
                continue  # no failure at the end of the period (no traffic since)
            reason = disabled_reason(endpoint, period)
            if store.disable(conn, endpoint, reason, now=now):
                disabled.append(endpoint.id)
                # hook: webhook.endpoint_disabled to the organisation's other endpoints
                operational.endpoint_disabled_by_sweep(
                    conn, endpoint.id, now=now, window=settings.operational_window
                )
                log.warning(
                    "disabled endpoint %s: %s",
                    endpoint.id,
                    reason,
                    extra={"config_id": endpoint.id, "organisation_id": endpoint.organisation_id},
                )
    return disabled


def report_unreported_failures(engine: Engine, settings: Settings, *, now: datetime) -> int:
    """Operational webhooks: failures counted while their endpoint's window ran
    and not carried by a later failure are reported once the window is over."""
    with db.write_transaction(engine) as conn:
        return operational.report_due(conn, now=now, window=settings.operational_window).sent


async def run_health_sweep(
    settings: Settings,
    engine: Engine,
    stop: asyncio.Event,
    interval: float = SWEEP_INTERVAL_SECONDS,
    *,
    clock: Clock = utcnow,
) -> None:
    """Sweep every ``interval`` seconds until ``stop`` is set; errors are logged, not fatal."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(disable_failing_endpoints, engine, settings, now=clock())
            await asyncio.to_thread(report_unreported_failures, engine, settings, now=clock())
        except Exception:
            log.exception("endpoint health sweep failed; trying again in %.0f s", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

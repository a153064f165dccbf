"""Configurations deleted or disabled: what this worker still holds of them ends now.

Issue 27.2: 2,000 deliveries queued for an endpoint answering in 100 ms, and
after ``DeleteWebhookConfig`` returned 664-680 requests still arrived, the
last 4.3 s later, signed with the secret the delete erased. The database rows
were cancelled, but the deliveries this worker had claimed (waiting in the
scheduler, handed over by a publish, or coming back from a claim query that
was running) carried their configuration as it was when claimed.

:meth:`Stops.stop` is called by the process that served the call, before the
call returns, and by every other worker process when the NOTIFY of the
change arrives (``storage/listen.py``). It records the stop time; the worker
drains what waits (``DeliveryWorker.stop_config``), and a delivery of that
configuration **claimed at or before** the stop, whenever it turns up later,
is finished without a request (:meth:`Stops.finished`): ``cancelled`` for a
deleted configuration, the usual "endpoint disabled: not attempted" for a
disabled one. Attempts already in flight finish and are logged as they end.
Deliveries claimed after the stop read the configuration as it is then (a
re-enabled endpoint is delivered to again). A stop is kept for a lease: every
delivery claimed before it has lost its lease by then.

The opened secret and headers of the configuration are dropped from the
attempter's cache, so a deleted endpoint's secret is never used again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from webhooks_service.delivery.attempt import not_attempted
from webhooks_service.domain import ClaimedDelivery, FinishedAttempt, Outcome
from webhooks_service.storage.config_deletion import CANCELLED_ERROR

__all__ = ["Stops"]


@dataclass(frozen=True, slots=True)
class _Stop:
    at: datetime
    deleted: bool


class Stops:
    def __init__(self, lease_seconds: float) -> None:
        self._keep = timedelta(seconds=lease_seconds + 1.0)
        self._stops: dict[str, _Stop] = {}

    def __bool__(self) -> bool:
        return bool(self._stops)

    def stop(self, config_id: str, *, deleted: bool, now: datetime) -> None:
        """``config_id`` was deleted (or disabled) at ``now``."""
        self._forget_before(now - self._keep)
        old = self._stops.get(config_id)
        self._stops[config_id] = _Stop(now, deleted or (old is not None and old.deleted))

    def _forget_before(self, cutoff: datetime) -> None:
        for config_id in [c for c, s in self._stops.items() if s.at < cutoff]:
            del self._stops[config_id]

    def stopped(self, d: ClaimedDelivery, lease_seconds: float) -> bool:
        """Whether ``d`` was claimed at or before its configuration's stop."""
        stop = self._stops.get(d.config_id)
        if stop is None:
            return False
        claimed_at = d.lease_until - timedelta(seconds=lease_seconds)
        return claimed_at <= stop.at

    def finished(self, d: ClaimedDelivery, now: datetime) -> FinishedAttempt:
        """The record of ``d`` ended without a request by the stop."""
        done = not_attempted(d, now)
        stop = self._stops.get(d.config_id)
        if stop is not None and stop.deleted:
            return replace(done, outcome=Outcome.CANCELLED, error=CANCELLED_ERROR)
        return done

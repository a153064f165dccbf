"""Retention: pruning events and their delivery log after ``retention_days``.

``prune`` is the use case behind ``webhooks prune``; ``run_retention`` is the
periodic task a long-running process (``webhooks serve`` / ``worker``) starts
next to its delivery worker. Both take the time from the caller (``now`` /
``clock``) so that tests decide what "old" means without waiting.

What goes (see ``storage/retention.py`` and docs/decisions.md): an event
stored more than ``retention_days`` ago none of whose deliveries is pending,
with all its deliveries and attempts. ``retention_days = 0`` keeps everything
(the periodic task does nothing; ``webhooks prune`` needs --older-than-days).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import endpoint_stats as endpoint_stats_core
from webhooks_service.errors import ConfigurationError, InvalidArgument
from webhooks_service.storage import config_deletion, db, endpoint_stats
from webhooks_service.storage import retention as store
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.retention import PruneResult

__all__ = ["PruneResult", "cutoff_for", "prune", "run_retention"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def cutoff_for(now: datetime, days: int) -> datetime:
    """Events stored before this instant are old enough to prune."""
    if days < 1:
        raise InvalidArgument(f"retention must be at least 1 day, not {days}")
    return now - timedelta(days=days)


def _check_batch_size(settings: Settings) -> None:
    if settings.prune_batch_size < 1:
        raise ConfigurationError(
            f"prune_batch_size must be at least 1, not {settings.prune_batch_size}"
        )


def prune(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    older_than_days: int | None = None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> PruneResult:
    """Prune (or, with ``dry_run``, count) what is older than ``older_than_days``
    (default ``settings.retention_days``) at ``now`` (default: the current time).

    Runs batch after batch of ``settings.prune_batch_size`` events, pausing
    ``settings.prune_pause`` seconds in between. Blocking: call it from a thread
    in async code.
    """
    _check_batch_size(settings)
    days = settings.retention_days if older_than_days is None else older_than_days
    cutoff = cutoff_for(now or utcnow(), days)
    if dry_run:
        return store.count_prunable(engine, cutoff)
    result = store.prune_before(
        engine,
        cutoff,
        batch_size=settings.prune_batch_size,
        pause=settings.prune_pause,
        sleep=sleep,
    )
    purge_deleted_configs(engine, cutoff)
    prune_endpoint_stats(engine, now or utcnow())
    return result


def prune_endpoint_stats(engine: Engine, now: datetime) -> int:
    """Drop the hourly endpoint stats older than GetEndpointStats reads (two days)."""
    with db.write_transaction(engine) as conn:
        return endpoint_stats.prune(conn, now - endpoint_stats_core.KEPT)


def purge_deleted_configs(engine: Engine, cutoff: datetime) -> int:
    """Drop deleted configurations whose whole log is gone (kept until then, see
    ``storage/config_deletion.py``)."""
    with db.write_transaction(engine) as conn:
        return config_deletion.purge_deleted(conn, cutoff)


async def _prune_once(
    settings: Settings, engine: Engine, stop: asyncio.Event, now: datetime
) -> PruneResult:
    """One pruning pass, batch by batch in a thread; stops early when ``stop`` is set."""
    _check_batch_size(settings)
    cutoff = cutoff_for(now, settings.retention_days)
    total = PruneResult()
    resume_from: datetime | None = None
    while not stop.is_set():
        batch = await asyncio.to_thread(
            store.prune_batch,
            engine,
            cutoff,
            settings.prune_batch_size,
            resume_from=resume_from,
        )
        total += batch.result
        if batch.picked < settings.prune_batch_size:
            break
        resume_from = batch.resume_from
        if settings.prune_pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.prune_pause)
    if not stop.is_set():
        await asyncio.to_thread(purge_deleted_configs, engine, cutoff)
        await asyncio.to_thread(prune_endpoint_stats, engine, now)
    return total


async def run_retention(
    settings: Settings,
    engine: Engine,
    stop: asyncio.Event,
    interval: float = 3600.0,
    *,
    clock: Clock = utcnow,
) -> None:
    """Prune once at start and then every ``interval`` seconds until ``stop`` is set.

    Errors (the database going away, a deadlock with another pruner) are
    logged and the next pass tries again: retention must never take the
    process down. Several processes may run it at once; they only wait on
    each other's batches.
    """
    if settings.retention_days <= 0:
        log.info("retention disabled (retention_days=0); events are kept forever")
        return
    while not stop.is_set():
        try:
            result = await _prune_once(settings, engine, stop, clock())
        except Exception:
            log.exception("pruning failed; trying again in %.0f s", interval)
        else:
            if result.events:
                log.info(
                    "pruned %d events, %d deliveries, %d attempts older than %d days",
                    result.events,
                    result.deliveries,
                    result.attempts,
                    settings.retention_days,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

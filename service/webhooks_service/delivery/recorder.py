"""What the worker writes back: finished attempts, in batches, and releases.

``Recorder``: each finished attempt goes into a buffer that one flusher task
writes in batches (``storage.queue.finish_batch``, in a thread). While one
batch is written the next accumulates, so under load batches grow by
themselves. A batch that fails is kept whole through a passing outage, else
written one attempt at a time so that one bad row cannot hold back the
others. The retries a batch schedules tell the claim loop when to look again.
On an ordered endpoint a batch that ends a key's head delivery promotes the
key's next one (``storage/ordering.py``): while the worker runs, finish_batch
claims it for this worker at once and ``adopt`` starts it (no claim query, no
wake-up); once the worker stops it is left due for whoever claims.

``Releases``: claimed deliveries that will not be attempted here (their
lease would run out before they could finish, the worker stops) go back to
the queue (``storage.queue.release``).

``Pace``: attempts finished per second lately, which sizes the hand-off's
prefetch (``handoff.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import operational
from webhooks_service.delivery.wake import ClaimWake
from webhooks_service.domain import ClaimedDelivery, Clock, FinishedAttempt, new_lease
from webhooks_service.errors import Unavailable
from webhooks_service.storage import queue

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

log = logging.getLogger("webhooks_service.delivery.worker")

# Results are written when this many are waiting, or this long after the first.
FLUSH_ROWS = 256
FLUSH_DELAY_SECONDS = 0.01


class Pace:
    """Attempts finished per second lately (a moving mean over quarter seconds)."""

    def __init__(self) -> None:
        self.count = 0
        self.rate = 0.0
        self._since = time.monotonic()

    def per_second(self) -> float:
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed >= 0.25:
            current = self.count / elapsed
            self.rate = current if self.rate == 0 else (self.rate + current) / 2
            self.count = 0
            self._since = now
        return self.rate


class Releases:
    """Claimed deliveries to hand back to the queue."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._items: list[ClaimedDelivery] = []

    @property
    def pending(self) -> bool:
        return bool(self._items)

    def add(self, items: Iterable[ClaimedDelivery]) -> None:
        self._items.extend(items)

    async def release(self) -> None:
        batch, self._items = self._items, []
        try:
            await asyncio.to_thread(queue.release, self.engine, batch, now=self.clock())
        except Exception:
            log.exception("releasing %d deliveries failed; their leases will expire", len(batch))


class Recorder:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Clock,
        wake: ClaimWake,
        observer: DeliveryObserver | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.wake = wake
        self.observer = observer
        self.attempts_recorded = 0
        self.pace = Pace()
        # finish_batch's after_write hook: operational webhooks (core/operational.py)
        self.operational = operational.Emitter(window=settings.operational_window)
        self._results: list[FinishedAttempt] = []
        # finished attempts not yet written (buffered or in the batch being written)
        self.unwritten = 0
        self._ready = asyncio.Event()
        self._final = False
        # Starts the deliveries finish_batch promoted and claimed for this worker
        # (ordered delivery); None: leave them due (set by DeliveryWorker).
        self.adopt: Callable[[list[ClaimedDelivery]], None] | None = None

    def finish(self, finished: FinishedAttempt) -> None:
        """Buffer one finished attempt for the flusher."""
        self.pace.count += 1
        self.unwritten += 1
        self._results.append(finished)
        self._ready.set()

    def close(self) -> None:
        """Nothing more will finish: the flusher writes what is left and ends."""
        self._final = True
        self._ready.set()

    async def flusher(self) -> None:
        """Write buffered results in batches until ``close`` and nothing is left."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if len(self._results) < FLUSH_ROWS and not self._final:
                # Let a batch build up: one transaction per many attempts.
                await asyncio.sleep(FLUSH_DELAY_SECONDS)
            if self._results:
                batch, self._results = self._results, []
                try:
                    await self._write(batch)
                    if self.operational.take_created():
                        self.wake.poke()  # operational webhooks were queued
                    if self.observer is not None:
                        self.observer.recorded(batch)
                        done = self.operational.take_counts()
                        self.observer.operational(done.sent, done.coalesced, done.suppressed)
                except Exception as exc:
                    log.exception("recording %d attempts failed", len(batch))
                    if self._final:
                        return  # the leases expire; the deliveries run again
                    await asyncio.sleep(min(1.0, self.settings.poll_interval))
                    if isinstance(exc, Unavailable):
                        # A passing outage (server restart, SQLite lock): keep the
                        # whole batch and try again, rather than dropping records
                        # and re-attempting those deliveries after their lease.
                        self._results[:0] = batch
                        self._ready.set()
                        continue
                    await self._record_one_by_one(batch)
                    self.unwritten -= len(batch)
                    continue
                self.unwritten -= len(batch)
                retries = [f.next_attempt_at for f in batch if f.next_attempt_at is not None]
                if retries:
                    self.wake.retry_at(min(retries))
            if self._final and not self._results:
                return

    async def _write(self, batch: list[FinishedAttempt]) -> None:
        """One ``finish_batch``; the ordered deliveries it promoted and claimed here
        go to ``adopt``."""
        now = self.clock()
        adopt = None if self._final else self.adopt
        promoted: list[ClaimedDelivery] = []
        self.attempts_recorded += await asyncio.to_thread(
            queue.finish_batch,
            self.engine,
            batch,
            now=now,
            after_write=self.operational,
            claim_next=new_lease(now, self.settings.lease_seconds) if adopt else None,
            promoted=promoted if adopt else None,
        )
        if adopt is not None and promoted:  # claimed here: start them
            adopt(promoted)

    async def _record_one_by_one(self, batch: list[FinishedAttempt]) -> None:
        """After a failed batch: write its attempts singly, so that one bad row
        (or a passing database outage) cannot hold back the others forever.
        An attempt that still cannot be written is dropped; its lease runs out
        and the delivery is attempted again."""
        for finished in batch:
            try:
                await self._write([finished])
                if self.observer is not None:
                    self.observer.recorded([finished])
            except Exception:
                log.exception(
                    "dropping the record of attempt %d of delivery %d; it will run again",
                    finished.attempt,
                    finished.delivery_id,
                )

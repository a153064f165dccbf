"""The delivery worker: claim due deliveries, start them fairly, record the results.

One ``DeliveryWorker`` per process, on the process's event loop. It has three
parts, each with one job:

- the **scheduler** (``delivery/scheduler.py``, a plain object) decides what
  starts next and what is worth claiming: the global limit, each
  organisation's share, each destination's adaptive limit;
- the **attempter** (``delivery/attempt.py``) turns a claimed delivery into a
  finished attempt (sign, POST, decide);
- this module runs the loop and does the I/O:

1. **Claim** a batch of due deliveries (``storage.queue.claim_due``, in a
   thread) as large as the room the scheduler leaves, skipping the
   organisations and configurations it names (``claim_exclusions``).
2. **Start** what the scheduler pops. Each slot in use has a *sender* task
   that makes the attempt and then goes on with the next delivery the
   scheduler lets start, until there is none (one task per slot, not one per
   attempt); the rest waits in the scheduler. A waiting delivery whose lease
   would run out before it could finish is released back to the queue instead.
3. **Record**: each finished attempt goes to the scheduler (``done``: slots
   and the destination's limit) and into a buffer that a flusher task writes
   in batches (``storage.queue.finish_batch``). While one batch is written
   the next accumulates, so under load batches grow by themselves.
4. **Wait** for a wake-up: the ``wakeup`` event (publish in this process,
   LISTEN/NOTIFY from others, see ``runner.py``), room to claim again, the
   earliest retry this worker scheduled, or the poll interval.

On stop it claims nothing more, releases what waits, gives in-flight attempts
``shutdown_grace`` seconds, releases whatever is still running, and writes
the last results. After a crash nothing is lost: leases expire.

**Hand-off from publish** (no claim query, no wake-up): a publish in this
process asks ``lend(organisation_id)`` before its transaction; the scheduler
reserves the slots that organisation could start right now plus a prefetch of
up to ``HANDOFF_PREFETCH`` that wait here (``reserve``), the publish inserts
that many new deliveries already claimed, and after the commit
``Lending.settle()`` returns the reservation and queues them: a whole publish
batch is delivered without a claim query re-reading what publish held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import operational
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.attempt import Attempter, not_attempted
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import RetryPolicy
from webhooks_service.delivery.scheduler import (
    FairScheduler,
    Limits,
    Reservation,
    Signal,
    Started,
)
from webhooks_service.domain import ClaimedDelivery, Clock, Destination, FinishedAttempt, utcnow
from webhooks_service.storage import db, queue

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

log = logging.getLogger(__name__)

SecretDecoder = Callable[[str], str]

# A waiting delivery is released instead of started when less than this much
# of its lease would remain after a whole attempt.
LEASE_MARGIN_SECONDS = 1.0
# Results are written when this many are waiting, or this long after the first.
FLUSH_ROWS = 256
FLUSH_DELAY_SECONDS = 0.01
# A publish hands over what could start at once plus a prefetch that waits here
# (FairScheduler.reserve), never re-read by a claim query: what this worker
# delivers in the scheduler's prefetch_seconds at its recent pace, at least
# PREFETCH_FLOOR and at most HANDOFF_PREFETCH (a few PublishEvents batches of
# 500). Bounded by the worker's own pace, a busy process does not hoard a burst
# that other worker processes could claim.
HANDOFF_PREFETCH = 2000
PREFETCH_FLOOR = 1000


def limits_for(settings: Settings) -> Limits:
    """The scheduler's parameters from the settings (see docs/decisions.md)."""
    return Limits(
        global_limit=settings.max_in_flight,
        destination_max=settings.max_in_flight_per_endpoint,
        org_prefetch=max(1, settings.claim_batch_size // 2),
        handoff_prefetch=HANDOFF_PREFETCH,
    )


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        transport: Transport | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock = utcnow,
        decode_secret: SecretDecoder | None = None,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer  # metrics + per-attempt log lines (observability/)
        self.engine = engine
        self.transport = transport or Transport(settings)
        self.clock = clock
        self.attempter = Attempter(
            self.transport,
            policy or RetryPolicy(settings.retry_schedule),
            decode_secret or cipher_for(settings.secret_key).open,
            clock,
        )
        self.scheduler: FairScheduler[ClaimedDelivery] = FairScheduler(limits_for(settings))
        self._wake = asyncio.Event()  # external: publish / NOTIFY (see runner.py)
        self._kick = asyncio.Event()  # what the loop waits on
        self._hard_kick = False  # a kick that must lead to a claim
        # The exclusions of the last claim that came back empty (None: new work since).
        self._empty_for: tuple[frozenset[str], frozenset[str]] | None = None
        self._running: dict[asyncio.Task[None], Started[ClaimedDelivery]] = {}
        self._results: list[FinishedAttempt] = []
        self._results_ready = asyncio.Event()
        self._to_release: list[ClaimedDelivery] = []
        self._next_retry: datetime | None = None
        self._waiting_for_slots = False
        self._stopping = False
        self._final = False
        self._accepting = False  # lends slots to publish (between start and stop)
        self.attempts_recorded = 0
        self._pace = Pace()
        # finish_batch's after_write hook: operational webhooks (core/operational.py)
        self.operational = operational.Emitter()

    # -- capacity ---------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def _room(self) -> int:
        """Deliveries worth claiming now: the global limit plus one batch of
        prefetched work, minus what the scheduler holds."""
        s = self.settings
        return s.max_in_flight + s.claim_batch_size - self.scheduler.held()

    def _min_claim(self) -> int:
        return max(1, min(self.settings.claim_batch_size, self.settings.max_in_flight) // 8)

    # -- the loop -----------------------------------------------------------

    async def run(self, stop: asyncio.Event, wakeup: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set, then shut down gracefully."""
        if wakeup is not None:
            self._wake = wakeup
        stop_watch = asyncio.create_task(self._watch_stop(stop))
        forwarder = asyncio.create_task(self._forward_wakeups())
        flusher = asyncio.create_task(self._flusher())
        await self.transport.start()
        self._accepting = True
        try:
            await self._loop(stop)
        finally:
            self._accepting = False
            self._stopping = True
            stop_watch.cancel()
            forwarder.cancel()
            await self._shutdown()
            self._final = True
            self._results_ready.set()
            await flusher
            await self.transport.close()

    async def _watch_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._poke()

    async def _forward_wakeups(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._poke()

    def _poke(self) -> None:
        """Wake the loop for a claim (new work published, retry due, stop, free slots)."""
        self._hard_kick = True
        self._kick.set()

    async def _loop(self, stop: asyncio.Event) -> None:
        batch_size = self.settings.claim_batch_size
        while not stop.is_set():
            if self._to_release:  # waited too long to start: back to the queue
                await self._release_pending()
            room = self._room()
            if room >= self._min_claim() or (room > 0 and not self._running):
                limit = min(room, batch_size)
                if self._hard_kick:
                    self._empty_for = None  # new work may be due anywhere
                self._kick.clear()
                self._hard_kick = False
                excluded = self.scheduler.claim_exclusions()
                try:
                    claimed = await asyncio.to_thread(
                        queue.claim_due,
                        self.engine,
                        now=self.clock(),
                        lease_seconds=self.settings.lease_seconds,
                        limit=limit,
                        exclude_organisations=excluded[0],
                        exclude_configs=excluded[1],
                    )
                except Exception:
                    log.exception("claiming deliveries failed; retrying after the poll interval")
                    claimed = []
                    await self._sleep(self.settings.poll_interval)
                if not claimed:
                    self._empty_for = excluded
                elif self.observer is not None:
                    self.observer.claimed(len(claimed))
                self._dispatch(claimed)
                if self._to_release:
                    await self._release_pending()
                if (
                    len(claimed) == limit
                    and not stop.is_set()
                    and self.scheduler.claim_exclusions() != self._empty_for
                ):
                    continue  # probably more due right now
                self._waiting_for_slots = False
            else:
                self._waiting_for_slots = True
                # Full: a kick cannot be acted on before a slot frees (which pokes
                # again, see _after_attempt). Left set, _sleep would return at once
                # and this loop would spin without ever yielding to the attempts.
                self._kick.clear()
            await self._sleep(self._wait_seconds())

    def _wait_seconds(self) -> float:
        wait = self.settings.poll_interval
        if self._next_retry is not None:
            until = (self._next_retry - self.clock()).total_seconds()
            wait = max(0.0, min(wait, until))
        return wait

    async def _sleep(self, seconds: float) -> None:
        if (
            self._kick.is_set()
            and not self._hard_kick
            and self.scheduler.claim_exclusions() == self._empty_for
        ):
            self._kick.clear()  # a claim with these very exclusions just came back empty
        if self._kick.is_set():
            return
        if (
            not self._waiting_for_slots
            and self._empty_for is not None
            and self.scheduler.claim_exclusions() != self._empty_for
        ):
            return  # what the last empty claim skipped has room since: claim again
        try:
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        except TimeoutError:
            pass
        if self._next_retry is not None and self._next_retry <= self.clock():
            self._next_retry = None

    # -- hand-off from publish -------------------------------------------------

    def lend(self, organisation_id: str) -> Lending | None:
        """Slots for one publish of ``organisation_id`` in this process (None: claim
        as usual): what could start right now and a prefetch that waits here (see
        ``FairScheduler.reserve``). Call ``settle()`` on the result whatever happens.
        """
        if not self._accepting:
            return None
        paced = int(self._pace.per_second() * self.scheduler.limits.prefetch_seconds)
        prefetch = min(HANDOFF_PREFETCH, max(PREFETCH_FLOOR, paced))
        reservation = self.scheduler.reserve(
            organisation_id, self.settings.max_in_flight + prefetch, prefetch
        )
        if reservation is None:
            return None
        return Lending(self, reservation)

    async def _adopt(self, reservation: Reservation, claimed: list[ClaimedDelivery]) -> int:
        """Settle a lending: give back its reservation, start what it leased."""
        self.scheduler.settle(reservation)
        if claimed and not self._accepting:
            # Stopped during the publish: hand them back to the queue.
            self._to_release.extend(claimed)
            await self._release_pending()
            return 0
        if claimed:
            if self.observer is not None:
                self.observer.claimed(len(claimed))
            self._dispatch(claimed)
        if self._waiting_for_slots and self._room() >= self._min_claim():
            self._waiting_for_slots = False
            self._poke()
        return len(claimed)

    # -- starting ---------------------------------------------------------------

    def _dispatch(self, claimed: list[ClaimedDelivery]) -> None:
        now = self.clock()
        for d in claimed:
            if d.enabled:
                self.scheduler.add(d)
            else:  # disabled since: finished without a request, no slot needed
                self._finish(not_attempted(d, now))
        self._to_release.extend(self.scheduler.drain(lambda d: self._can_start(d, now)))
        self._start_ready()

    def _start_ready(self) -> None:
        """Start a sender for each delivery the scheduler lets start now."""
        while (started := self._next()) is not None:
            task = asyncio.create_task(self._send(started))
            self._running[task] = started

    def _next(self) -> Started[ClaimedDelivery] | None:
        """The next delivery the scheduler lets start now; None if none. One that
        waited too long (its lease would run out mid-attempt) is released."""
        now: datetime | None = None
        while (started := self.scheduler.pop()) is not None:
            now = now or self.clock()
            if self._can_start(started.item, now):
                return started
            self.scheduler.done(started, Signal.NEUTRAL, 0.0)
            self._to_release.append(started.item)
        return None

    def _can_start(self, d: ClaimedDelivery, now: datetime) -> bool:
        """Whether ``d`` may start now: its lease outlasts a whole attempt, or it was
        claimed just now (a lease shorter than the timeout is the operator's choice)."""
        left = (d.lease_until - now).total_seconds()
        need = (d.timeout_seconds or self.settings.attempt_timeout) + LEASE_MARGIN_SECONDS
        return left >= need or left >= self.settings.lease_seconds - LEASE_MARGIN_SECONDS

    async def _send(self, started: Started[ClaimedDelivery]) -> None:
        """A sender: attempt, hand the result over, and go on with the next delivery
        the scheduler lets start, until there is none. One task per slot in use,
        not one per attempt: under load a sender makes many attempts in a row."""
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                try:
                    attempted = await self.attempter.attempt(started.item)
                except Exception:
                    log.exception("delivery attempt crashed; its lease will expire")
                    self.scheduler.done(started, Signal.NEUTRAL, 0.0)
                else:
                    self.scheduler.done(started, attempted.signal, attempted.seconds)
                    self._finish(attempted.finished)
                if self._stopping:
                    return
                previous = started.item
                following = self._next()
                if following is not None:
                    self._running[task] = started = following
                    if self.scheduler.free() > 0:
                        self._start_ready()  # room may have grown (AIMD, an organisation left)
                self._after_attempt(previous)
                if following is None:
                    return
        except BaseException:  # cancelled at shutdown, mid-attempt
            self.scheduler.done(started, Signal.NEUTRAL, 0.0)
            raise
        finally:
            self._running.pop(task, None)

    def _finish(self, finished: FinishedAttempt) -> None:
        self._pace.count += 1
        self._results.append(finished)
        self._results_ready.set()

    def _after_attempt(self, d: ClaimedDelivery) -> None:
        """After an attempt of ``d`` freed its slots: wake the loop where that helps."""
        if self._to_release:
            self._poke()  # the loop releases them
        if self._empty_for is not None and not self._kick.is_set():
            orgs, configs = self._empty_for
            if (
                d.organisation_id in orgs or d.config_id in configs
            ) and self.scheduler.claim_exclusions() != self._empty_for:
                # Work the last (empty) claim skipped may be claimed now: claim soon.
                self._kick.set()
        if self._waiting_for_slots and self._room() >= self._min_claim():
            self._waiting_for_slots = False
            self._poke()

    # -- recording ------------------------------------------------------------

    async def _flusher(self) -> None:
        """Write buffered results in batches until the worker has shut down."""
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            if len(self._results) < FLUSH_ROWS and not self._final:
                # Let a batch build up: one transaction per many attempts.
                await asyncio.sleep(FLUSH_DELAY_SECONDS)
            if self._results:
                batch, self._results = self._results, []
                try:
                    self.attempts_recorded += await asyncio.to_thread(
                        queue.finish_batch,
                        self.engine,
                        batch,
                        now=self.clock(),
                        after_write=self.operational,
                    )
                    if self.operational.take_created():
                        self._poke()  # operational webhooks were queued
                    if self.observer is not None:
                        self.observer.recorded(batch)
                except Exception as exc:
                    log.exception("recording %d attempts failed", len(batch))
                    if self._final:
                        return  # the leases expire; the deliveries run again
                    await asyncio.sleep(min(1.0, self.settings.poll_interval))
                    if db.is_unavailable(exc):
                        # A passing outage (server restart, SQLite lock): keep the
                        # whole batch and try again, rather than dropping records
                        # and re-attempting those deliveries after their lease.
                        self._results[:0] = batch
                        self._results_ready.set()
                        continue
                    await self._record_one_by_one(batch)
                    continue
                retries = [f.next_attempt_at for f in batch if f.next_attempt_at is not None]
                if retries:
                    soonest = min(retries)
                    if self._next_retry is None or soonest < self._next_retry:
                        self._next_retry = soonest
                        self._poke()
            if self._final and not self._results:
                return

    async def _record_one_by_one(self, batch: list[FinishedAttempt]) -> None:
        """After a failed batch: write its attempts singly, so that one bad row
        (or a passing database outage) cannot hold back the others forever.
        An attempt that still cannot be written is dropped; its lease runs out
        and the delivery is attempted again."""
        for finished in batch:
            try:
                self.attempts_recorded += await asyncio.to_thread(
                    queue.finish_batch,
                    self.engine,
                    [finished],
                    now=self.clock(),
                    after_write=self.operational,
                )
                if self.observer is not None:
                    self.observer.recorded([finished])
            except Exception:
                log.exception(
                    "dropping the record of attempt %d of delivery %d; it will run again",
                    finished.attempt,
                    finished.delivery_id,
                )

    async def _release_pending(self) -> None:
        batch, self._to_release = self._to_release, []
        try:
            await asyncio.to_thread(queue.release, self.engine, batch, now=self.clock())
        except Exception:
            log.exception("releasing %d deliveries failed; their leases will expire", len(batch))

    async def _shutdown(self) -> None:
        self._to_release.extend(self.scheduler.drain(lambda d: False))
        if self._running:
            _done, pending = await asyncio.wait(
                list(self._running), timeout=self.settings.shutdown_grace
            )
            if pending:
                unfinished = [self._running[t].item for t in pending]
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self._to_release.extend(unfinished)
                log.warning("released %d attempts still running at shutdown", len(unfinished))
        if self._to_release:
            await self._release_pending()


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


class Lending:
    """A scheduler reservation lent to one publish (``core.publishing.HandOff``).

    ``take`` runs in the publish thread (only that thread touches the
    reservation until ``settle``); ``handed`` gets the deliveries inserted
    claimed; ``settle`` runs on the event loop after the transaction,
    committed or not, and answers how many deliveries were handed over.
    """

    def __init__(self, worker: DeliveryWorker, reservation: Reservation) -> None:
        self.lease_seconds = worker.settings.lease_seconds
        self._worker = worker
        self._reservation = reservation
        self._claimed: list[ClaimedDelivery] = []
        self._settled = False

    def take(self, destination: Destination) -> bool:
        return self._reservation.take(destination)

    def handed(self, claimed: Sequence[ClaimedDelivery]) -> None:
        self._claimed = list(claimed)

    async def settle(self) -> int:
        if self._settled:
            return 0
        self._settled = True
        return await self._worker._adopt(self._reservation, self._claimed)


class LocalWorker:
    """The publish side's handle on the delivery worker of its own process.

    ``webhooks serve`` makes one, gives ``notify`` and ``lend`` to the API
    (the EventPublisher) and the handle to ``run_worker``, which attaches the
    running worker. Without a running worker ``lend`` answers None and
    publish only wakes (``notify``) whoever claims.
    """

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.worker: DeliveryWorker | None = None

    def notify(self) -> None:
        self.wakeup.set()

    def lend(self, organisation_id: str) -> Lending | None:
        return self.worker.lend(organisation_id) if self.worker is not None else None

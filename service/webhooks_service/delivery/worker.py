"""The delivery worker: claim due deliveries, attempt them, record the results.

One ``DeliveryWorker`` per process, on the process's event loop. Its loop:

1. **Claim** a batch of due deliveries (``storage.queue.claim_due``, in a
   thread) as large as the free capacity allows, excluding endpoints this
   worker has saturated.
2. **Dispatch**: each delivery starts at once as an asyncio task if its
   endpoint has a free slot (``max_in_flight_per_endpoint``), else it waits in
   that endpoint's local backlog. Only running attempts count against the
   global limit (``max_in_flight``). An endpoint whose backlog already holds a
   full endpoint-limit of work is *saturated* and excluded from further
   claims, so a hanging endpoint holds at most one endpoint-limit of running
   attempts plus one batch of waiting ones, and never delays other
   endpoints. Waiting deliveries whose lease would run out before they could
   finish are released back to the queue.
3. **Record**: each attempt's result goes through the ``RetryPolicy`` and
   into a buffer that a flusher task writes in batches
   (``storage.queue.finish_batch``: attempt rows + delivery updates in one
   transaction). While one batch is written the next accumulates, so under
   load batches grow by themselves and at low load latency stays low.
4. **Wait** for a wake-up: the ``wakeup`` event (set by publish in this
   process, and by LISTEN/NOTIFY from other processes on PostgreSQL, see
   ``runner.py``), a free slot when capacity ran out, the earliest retry this
   worker scheduled, or the poll interval.

On stop it claims nothing more, releases the backlog, gives in-flight
attempts ``shutdown_grace`` seconds, releases whatever is still running, and
writes the last results. After a crash nothing is lost: leases expire.

**Hand-off from publish** (the fast path, no claim query and no wake-up): a
publish in this process borrows free slots with ``lend()`` (through
``LocalWorker``) before its transaction; the transaction inserts as many new
deliveries as the slots allow already claimed under a lease
(``storage.queue.Handoff``), and after the commit ``Lending.settle()`` hands
them to ``_dispatch`` like a claimed batch. Only deliveries that can start at
once are lent for: the global slots free now (``max_in_flight``, minus slots
lent to other publishes still in their transaction) and, per endpoint, the
slots under ``max_in_flight_per_endpoint`` (none for an endpoint with
deliveries already waiting here). The rest are inserted unclaimed and woken
for as usual. Lent slots count as taken until settled, so claims and
backlogged deliveries never fill them meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import operational
from webhooks_service.core.endpoint_headers import request_headers
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import AttemptResult, Outcome, RetryPolicy
from webhooks_service.delivery.signing import webhook_headers
from webhooks_service.observability import tracing
from webhooks_service.storage import db, queue
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.queue import ClaimedDelivery, FinishedAttempt

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SecretDecoder = Callable[[str], str]

DISABLED_ERROR = "endpoint disabled: the delivery was not attempted"
# A waiting delivery is released instead of started when less than this much
# of its lease would remain after a whole attempt.
LEASE_MARGIN_SECONDS = 1.0
# Results are written when this many are waiting, or this long after the first.
FLUSH_ROWS = 256
FLUSH_DELAY_SECONDS = 0.01


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
        self.policy = policy or RetryPolicy(settings.retry_schedule)
        self.clock = clock
        self.decode_secret = decode_secret or cipher_for(settings.secret_key).open
        self._wake = asyncio.Event()  # external: publish / NOTIFY (see runner.py)
        self._kick = asyncio.Event()  # what the loop waits on
        self._hard_kick = False  # a kick that must lead to a claim
        self._kicked: set[str] = set()  # endpoints that freed up since the last claim
        self._empty_for: frozenset[str] | None = None  # exclusion of the last empty claim
        self._running: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._per_endpoint: dict[str, int] = {}
        self._backlog: dict[str, deque[ClaimedDelivery]] = {}
        self._backlog_size = 0
        self._results: list[FinishedAttempt] = []
        self._results_ready = asyncio.Event()
        self._to_release: list[ClaimedDelivery] = []
        self._next_retry: datetime | None = None
        self._waiting_for_slots = False
        self._stopping = False
        self._final = False
        self._accepting = False  # lends slots to publish (between start and stop)
        self._lent = 0  # slots lent to publishes not yet settled
        self.attempts_recorded = 0
        # finish_batch's after_write hook: operational webhooks (core/operational.py)
        self.operational = operational.Emitter()

    # -- capacity ---------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def _capacity(self) -> int:
        """Attempts that may start now under the global limit."""
        return self.settings.max_in_flight - len(self._running) - self._lent

    def _room(self) -> int:
        """Deliveries this worker may still claim: the global limit plus one batch
        of prefetched work waiting in the backlogs, so that the next attempts are
        ready when slots free up."""
        limit = self.settings.max_in_flight_per_endpoint
        # A saturated endpoint's waiting work counts once (one endpoint-limit):
        # it is excluded from claims anyway, and a hanging endpoint's pile must
        # not shrink the batches claimed for everyone else.
        waiting = sum(min(len(w), limit) for w in self._backlog.values())
        held = len(self._running) + waiting + self._lent
        return self.settings.max_in_flight + self.settings.claim_batch_size - held

    def _min_claim(self) -> int:
        return max(1, min(self.settings.claim_batch_size, self.settings.max_in_flight) // 8)

    def _saturated(self) -> list[str]:
        """Endpoints with a full endpoint-limit of work already waiting here."""
        limit = self.settings.max_in_flight_per_endpoint
        return [c for c, waiting in self._backlog.items() if len(waiting) >= limit]

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
            room = self._room()
            if room >= self._min_claim() or (room > 0 and not self._running):
                limit = min(room, batch_size)
                if self._hard_kick:
                    self._empty_for = None  # new work may be due anywhere
                self._kick.clear()
                self._hard_kick = False
                self._kicked.clear()
                excluded = frozenset(self._saturated())
                try:
                    claimed = await asyncio.to_thread(
                        queue.claim_due,
                        self.engine,
                        now=self.clock(),
                        lease_seconds=self.settings.lease_seconds,
                        limit=limit,
                        exclude_configs=excluded,
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
                if len(claimed) == limit and not stop.is_set() and self._more_claimable(claimed):
                    continue  # probably more due right now
                self._waiting_for_slots = False
            else:
                self._waiting_for_slots = True
                # Full: a kick cannot be acted on before a slot frees (which pokes
                # again, see _attempt_done). Left set, _sleep would return at once
                # and this loop would spin without ever yielding to the attempts.
                self._kick.clear()
            await self._sleep(self._wait_seconds())

    def _more_claimable(self, claimed: list[ClaimedDelivery]) -> bool:
        """Whether claiming again right after a full batch could find work.

        Yes if an endpoint of the batch still has room, or if the batch
        saturated endpoints so that the next claim looks elsewhere, unless a
        claim with that very exclusion already came back empty (and nothing
        was published since): that would be a wasted transaction.
        """
        saturated = frozenset(self._saturated())
        if any(d.config_id not in saturated for d in claimed):
            return True
        return saturated != self._empty_for

    def _wait_seconds(self) -> float:
        wait = self.settings.poll_interval
        if self._next_retry is not None:
            until = (self._next_retry - self.clock()).total_seconds()
            wait = max(0.0, min(wait, until))
        return wait

    async def _sleep(self, seconds: float) -> None:
        if self._kick.is_set() and not self._hard_kick:
            # Only endpoint kicks: pointless if those endpoints are saturated again.
            saturated = set(self._saturated())
            if self._kicked <= saturated:
                self._kick.clear()
        if self._kick.is_set():
            return
        try:
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        except TimeoutError:
            pass
        if self._next_retry is not None and self._next_retry <= self.clock():
            self._next_retry = None

    # -- hand-off from publish -------------------------------------------------

    def lend(self) -> Lending | None:
        """Free slots for one publish in this process (None: claim as usual).

        At most one claim batch; only what could start right now (see the
        module docstring). Call ``settle()`` on the result whatever happens.
        """
        if not self._accepting:
            return None
        slots = min(self._capacity(), self.settings.claim_batch_size)
        if slots <= 0:
            return None
        limit = self.settings.max_in_flight_per_endpoint
        free = {c: limit - n for c, n in self._per_endpoint.items()}
        for config_id in self._backlog:
            free[config_id] = 0  # its waiting deliveries go first
        self._lent += slots
        return Lending(self, slots, free, limit)

    async def _adopt(self, lent: int, claimed: list[ClaimedDelivery]) -> int:
        """Settle a lending: take back its slots, start what it leased."""
        self._lent -= lent
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

    # -- dispatching ----------------------------------------------------------

    def _dispatch(self, claimed: list[ClaimedDelivery]) -> None:
        limit = self.settings.max_in_flight_per_endpoint
        now = self.clock()
        for d in claimed:
            if not d.enabled:
                self._record(d, AttemptResult(error=DISABLED_ERROR), now, forced=Outcome.FAILED)
            elif self._per_endpoint.get(d.config_id, 0) < limit and self._capacity() > 0:
                self._start(d)
            else:
                self._backlog.setdefault(d.config_id, deque()).append(d)
                self._backlog_size += 1
        self._expire_backlog(now)

    def _expire_backlog(self, now: datetime) -> None:
        """Release waiting deliveries that could no longer finish within their lease."""
        for config_id in list(self._backlog):
            waiting = self._backlog[config_id]
            while waiting and not self._can_start(waiting[0], now):
                self._to_release.append(waiting.popleft())
                self._backlog_size -= 1
            if not waiting:
                del self._backlog[config_id]

    def _can_start(self, d: ClaimedDelivery, now: datetime) -> bool:
        need = self._timeout_for(d) + LEASE_MARGIN_SECONDS
        return d.lease_until - now >= timedelta(seconds=need)

    def _start(self, d: ClaimedDelivery) -> None:
        self._per_endpoint[d.config_id] = self._per_endpoint.get(d.config_id, 0) + 1
        task = asyncio.create_task(self._attempt(d))
        self._running[task] = d
        task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        d = self._running.pop(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery attempt crashed", exc_info=task.exception())
        count = self._per_endpoint[d.config_id] - 1
        if count:
            self._per_endpoint[d.config_id] = count
        else:
            del self._per_endpoint[d.config_id]
        if self._stopping:
            return
        if d.config_id in self._backlog:
            self._start_waiting(d.config_id)
        if self._backlog and self._capacity() > 0:
            # A global slot is free: endpoints held back only by the global limit.
            limit = self.settings.max_in_flight_per_endpoint
            for config_id in list(self._backlog):
                if self._capacity() <= 0:
                    break
                if self._per_endpoint.get(config_id, 0) < limit:
                    self._start_waiting(config_id)
        if self._waiting_for_slots and self._room() >= self._min_claim():
            self._waiting_for_slots = False
            self._poke()

    def _start_waiting(self, config_id: str) -> None:
        """Start the next waiting delivery of an endpoint (releasing stale ones)."""
        waiting = self._backlog[config_id]
        now = self.clock()
        while waiting:
            nxt = waiting.popleft()
            self._backlog_size -= 1
            if self._can_start(nxt, now):
                self._start(nxt)
                break
            self._to_release.append(nxt)
        if len(waiting) == self.settings.max_in_flight_per_endpoint - 1 or not waiting:
            self._kicked.add(config_id)  # no longer saturated: claim more for it
            self._kick.set()
        if not waiting:
            del self._backlog[config_id]

    def _timeout_for(self, d: ClaimedDelivery) -> float:
        return d.timeout_seconds or self.settings.attempt_timeout

    async def _attempt(self, d: ClaimedDelivery) -> None:
        secrets = [self.decode_secret(d.secret)]
        if d.previous_secret:
            secrets.append(self.decode_secret(d.previous_secret))
        body = d.payload.encode()
        started = self.clock()
        span = tracing.start_attempt(d)  # hook: None while tracing is off
        signed = webhook_headers(secrets, d.event_id, int(started.timestamp()), body)
        # hook: the endpoint's custom headers (core/endpoint_headers.py)
        headers = request_headers(signed, d.headers, self.decode_secret)
        result = await self.transport.post(d.url, body, headers, d.timeout_seconds)
        finished = self._record(d, result, started)
        tracing.end_attempt(span, finished)

    def _record(
        self,
        d: ClaimedDelivery,
        result: AttemptResult,
        attempted_at: datetime,
        forced: Outcome | None = None,
    ) -> FinishedAttempt:
        if forced is not None:
            outcome, next_at, disable = forced, None, None
        else:
            decision = self.policy.decide(result, d.attempt, self.clock())
            outcome, next_at = decision.outcome, decision.next_attempt_at
            disable = decision.disabled_reason if decision.disable_endpoint else None
        finished = FinishedAttempt(
            delivery_id=d.id,
            claim_token=d.claim_token,
            attempt=d.attempt,
            organisation_id=d.organisation_id,
            config_id=d.config_id,
            event_pk=d.event_pk,
            event_id=d.event_id,
            event_type=d.event_type,
            url=d.url,
            outcome=outcome.value,
            attempted_at=attempted_at,
            next_attempt_at=next_at,
            response_status_code=result.status_code,
            response_body=result.response_body,
            response_body_truncated=result.response_body_truncated,
            error=result.error,
            duration_ms=result.duration_ms,
            disable_reason=disable,
        )
        self._results.append(finished)
        self._results_ready.set()
        return finished

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
        for waiting in self._backlog.values():
            self._to_release.extend(waiting)
        self._backlog.clear()
        self._backlog_size = 0
        if self._running:
            _done, pending = await asyncio.wait(
                list(self._running), timeout=self.settings.shutdown_grace
            )
            if pending:
                unfinished = [self._running[t] for t in pending]
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self._to_release.extend(unfinished)
                log.warning("released %d attempts still running at shutdown", len(unfinished))
        if self._to_release:
            await self._release_pending()


class Lending:
    """Slots of a ``DeliveryWorker`` lent to one publish transaction.

    Implements ``storage.queue.Handoff``: ``take`` runs in the publish
    thread (only that thread touches the counters until ``settle``), and
    ``settle`` on the event loop after the transaction, committed or not.
    """

    def __init__(
        self, worker: DeliveryWorker, slots: int, endpoint_free: dict[str, int], default: int
    ) -> None:
        self.lease_seconds = worker.settings.lease_seconds
        self._worker = worker
        self._lent = slots
        self._slots = slots
        self._endpoint_free = endpoint_free
        self._default = default
        self._claimed: list[ClaimedDelivery] = []
        self._settled = False

    def take(self, config_id: str) -> bool:
        free = self._endpoint_free.get(config_id, self._default)
        if self._slots <= 0 or free <= 0:
            return False
        self._slots -= 1
        self._endpoint_free[config_id] = free - 1
        return True

    def leased(self, claimed: Sequence[ClaimedDelivery]) -> None:
        self._claimed = list(claimed)

    async def settle(self) -> int:
        """Return the slots and start the leased deliveries; how many were handed over."""
        if self._settled:
            return 0
        self._settled = True
        return await self._worker._adopt(self._lent, self._claimed)


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

    def lend(self) -> Lending | None:
        return self.worker.lend() if self.worker is not None else None

"""Starting deliveries: one sender task per slot in use.

``dispatch`` queues claimed (or handed-over) deliveries in the scheduler and
starts what it lets start. Each slot in use has a *sender* task that makes
the attempt (``attempt.py``), hands the result to the recorder and the
scheduler (``done``: slots and the destination's limit), and goes on with the
next delivery the scheduler lets start, until there is none: one task per
slot, not one per attempt; the rest waits in the scheduler. A waiting
delivery whose lease would run out before it could finish is released back
to the queue instead.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from webhooks_service.config import Settings
from webhooks_service.delivery.attempt import Attempter, not_attempted
from webhooks_service.delivery.recorder import Recorder, Releases
from webhooks_service.delivery.scheduler import FairScheduler, Signal, Started
from webhooks_service.delivery.shutdown import Lifecycle
from webhooks_service.delivery.wake import ClaimWake
from webhooks_service.domain import ClaimedDelivery, Clock

log = logging.getLogger("webhooks_service.delivery.worker")

# A waiting delivery is released instead of started when less than this much
# of its lease would remain after a whole attempt.
LEASE_MARGIN_SECONDS = 1.0


class Senders:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        scheduler: FairScheduler[ClaimedDelivery],
        attempter: Attempter,
        recorder: Recorder,
        releases: Releases,
        wake: ClaimWake,
        lifecycle: Lifecycle,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.scheduler = scheduler
        self.attempter = attempter
        self.recorder = recorder
        self.releases = releases
        self.wake = wake
        self.lifecycle = lifecycle  # stopping: a sender ends after its current attempt
        self.running: dict[asyncio.Task[None], Started[ClaimedDelivery]] = {}

    def dispatch(self, claimed: list[ClaimedDelivery]) -> None:
        """Queue ``claimed`` in the scheduler and start what may start now."""
        now = self.clock()
        for d in claimed:
            if d.enabled:
                self.scheduler.add(d)
            else:  # disabled since: finished without a request, no slot needed
                self.recorder.finish(not_attempted(d, now))
        self.releases.add(self.scheduler.drain(lambda d: self._can_start(d, now)))
        self._start_ready()

    def _start_ready(self) -> None:
        """Start a sender for each delivery the scheduler lets start now."""
        while (started := self._next()) is not None:
            task = asyncio.create_task(self._send(started))
            self.running[task] = started

    def _next(self) -> Started[ClaimedDelivery] | None:
        """The next delivery the scheduler lets start now; None if none. One that
        waited too long (its lease would run out mid-attempt) is released."""
        now: datetime | None = None
        while (started := self.scheduler.pop()) is not None:
            now = now or self.clock()
            if self._can_start(started.item, now):
                return started
            self.scheduler.done(started, Signal.NEUTRAL, 0.0)
            self.releases.add([started.item])
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
                    self.recorder.finish(attempted.finished)
                if self.lifecycle.stopping:
                    return
                previous = started.item
                following = self._next()
                if following is not None:
                    self.running[task] = started = following
                    if self.scheduler.free() > 0:
                        self._start_ready()  # room may have grown (AIMD, an organisation left)
                self._after_attempt(previous)
                if following is None:
                    return
        except BaseException:  # cancelled at shutdown, mid-attempt
            self.scheduler.done(started, Signal.NEUTRAL, 0.0)
            raise
        finally:
            self.running.pop(task, None)

    def _after_attempt(self, d: ClaimedDelivery) -> None:
        """After an attempt of ``d`` freed its slots: wake the loop where that helps."""
        if self.releases.pending:
            self.wake.poke()  # the loop releases them
        self.wake.attempt_finished(d)
        self.wake.slots_freed()

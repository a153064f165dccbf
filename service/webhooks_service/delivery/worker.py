"""The delivery worker: claim due deliveries, start them fairly, record the results.

One ``DeliveryWorker`` per process, on the process's event loop. It wires
parts that each do one job:

- the **scheduler** (``scheduler.py``, a plain object) decides what starts
  next and what is worth claiming: the global limit, each organisation's
  share, each destination's adaptive limit;
- the **claim loop** (``claim_loop.py``) claims as the scheduler leaves room
  and waits on the **wake** (``wake.py``: when to claim next, one object with
  named states);
- the **senders** (``senders.py``): one task per slot in use, each making
  attempts (``attempt.py``: sign, POST, decide) until the scheduler lets
  nothing more start;
- the **recorder** (``recorder.py``) writes finished attempts in batches and
  releases what will not be attempted here;
- the **hand-off** (``handoff.py``) lends slots to publish in this process,
  which inserts its new deliveries already claimed for this worker;
- the **shutdown** (``shutdown.py``): the lifecycle, and on stop: claim
  nothing more, release what waits, give in-flight attempts
  ``shutdown_grace`` seconds, release whatever is still running, and write
  the last results. After a crash nothing is lost: leases expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.attempt import Attempter
from webhooks_service.delivery.claim_loop import ClaimLoop
from webhooks_service.delivery.handoff import (
    HANDOFF_PREFETCH,
    PREFETCH_FLOOR,
    HandOff,
    Lending,
    LocalWorker,
)
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.recorder import Recorder, Releases
from webhooks_service.delivery.retry_policy import RetryPolicy
from webhooks_service.delivery.scheduler import FairScheduler, Limits
from webhooks_service.delivery.senders import Senders
from webhooks_service.delivery.shutdown import Lifecycle, Phase, shut_down
from webhooks_service.delivery.wake import ClaimWake
from webhooks_service.domain import ClaimedDelivery, Clock, utcnow

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

log = logging.getLogger(__name__)

__all__ = [
    "HANDOFF_PREFETCH",
    "PREFETCH_FLOOR",
    "DeliveryWorker",
    "Lending",
    "LocalWorker",
    "limits_for",
]

SecretDecoder = Callable[[str], str]


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
        self.lifecycle = Lifecycle()
        self.wake = ClaimWake(settings, self.scheduler)
        self.releases = Releases(engine, clock)
        self.recorder = Recorder(settings, engine, clock, self.wake, observer)
        self.senders = Senders(
            settings,
            clock,
            self.scheduler,
            self.attempter,
            self.recorder,
            self.releases,
            self.wake,
            self.lifecycle,
        )
        self.claim_loop = ClaimLoop(
            settings,
            engine,
            clock,
            self.scheduler,
            self.wake,
            self.senders,
            self.releases,
            observer,
        )
        self.handoff = HandOff(
            settings,
            self.scheduler,
            self.recorder.pace,
            self.senders,
            self.releases,
            self.wake,
            self.lifecycle,
            observer,
        )
        # finish_batch's after_write hook: operational webhooks (core/operational.py)
        self.operational = self.recorder.operational
        self.recorder.adopt = self._adopt_promoted
        self._releasing: set[asyncio.Task[None]] = set()

    def _adopt_promoted(self, promoted: list[ClaimedDelivery]) -> None:
        """Start the ordered deliveries finish_batch promoted and claimed for this
        worker (the next of their keys); after a stop, hand them back instead."""
        if self.lifecycle.accepting:
            if self.observer is not None:
                self.observer.claimed(len(promoted))
            self.senders.dispatch(promoted)
            return
        self.releases.add(promoted)
        task = asyncio.get_running_loop().create_task(self.releases.release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    @property
    def in_flight(self) -> int:
        return len(self.senders.running)

    @property
    def attempts_recorded(self) -> int:
        return self.recorder.attempts_recorded

    @property
    def claims(self) -> int:
        """Claim queries done so far (``ClaimLoop.claims``)."""
        return self.claim_loop.claims

    @property
    def idle(self) -> bool:
        """Nothing in flight, nothing waiting to start, every finished attempt
        written: no attempt starts until a claim or a hand-off brings more."""
        return (
            not self.senders.running and self.scheduler.waiting == 0 and not self.recorder.unwritten
        )

    def lend(self, organisation_id: str) -> Lending | None:
        """Slots for one publish in this process (``handoff.HandOff.lend``)."""
        return self.handoff.lend(organisation_id)

    def stop_config(self, config_id: str, deleted: bool) -> None:
        """``config_id`` was deleted or disabled (by this process's API, or
        another's NOTIFY): what waits of it ends now, nothing of it starts
        (``delivery/stops.py``); attempts in flight finish."""
        dropped = self.senders.stop_config(config_id, deleted=deleted)
        if dropped:
            log.info(
                "%s %s: %d waiting deliveries ended without a request",
                "deleted" if deleted else "disabled",
                config_id,
                dropped,
            )

    async def run(self, stop: asyncio.Event, wakeup: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set, then shut down gracefully."""
        loop = self.claim_loop
        stop_watch = asyncio.create_task(loop.watch_stop(stop))
        forwarder = asyncio.create_task(loop.forward_wakeups(wakeup or asyncio.Event()))
        flusher = asyncio.create_task(self.recorder.flusher())
        await self.transport.start()
        self.lifecycle.phase = Phase.RUNNING
        try:
            await loop.run(stop)
        finally:
            self.lifecycle.phase = Phase.STOPPING
            stop_watch.cancel()
            forwarder.cancel()
            await shut_down(
                self.scheduler, self.senders.running, self.releases, self.settings.shutdown_grace
            )
            self.lifecycle.phase = Phase.FINAL
            self.recorder.close()
            await flusher
            await self.transport.close()

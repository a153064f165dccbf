"""Hand-off from publish: new deliveries handed to this process's worker, claimed.

A publish in this process asks ``lend(organisation_id)`` before its
transaction; the scheduler reserves the slots that organisation could start
right now plus a prefetch that waits here (``FairScheduler.reserve``), the
publish inserts that many new deliveries already claimed, and after the
commit ``Lending.settle()`` returns the reservation and queues them
(``HandOff.adopt``): a whole publish batch is delivered without a claim query
re-reading what publish held, and without a wake-up.

``LocalWorker`` is the publish side's handle on the worker of its own process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from webhooks_service.config import Settings
from webhooks_service.delivery.recorder import Pace, Releases
from webhooks_service.delivery.scheduler import FairScheduler, Reservation
from webhooks_service.delivery.senders import Senders
from webhooks_service.delivery.shutdown import Lifecycle
from webhooks_service.delivery.wake import ClaimWake
from webhooks_service.domain import ClaimedDelivery, Destination

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

# A publish hands over what could start at once plus a prefetch that waits here
# (FairScheduler.reserve), never re-read by a claim query: what this worker
# delivers in the scheduler's prefetch_seconds at its recent pace, at least
# PREFETCH_FLOOR and at most HANDOFF_PREFETCH (a few PublishEvents batches of
# 500; the scheduler's Limits.handoff_prefetch, see worker.limits_for). Bounded
# by the worker's own pace, a busy process does not hoard a burst that other
# worker processes could claim.
HANDOFF_PREFETCH = 2000
PREFETCH_FLOOR = 1000


class HandOff:
    """The worker's side of the hand-off: lend slots, adopt what was handed over."""

    def __init__(
        self,
        settings: Settings,
        scheduler: FairScheduler[ClaimedDelivery],
        pace: Pace,
        senders: Senders,
        releases: Releases,
        wake: ClaimWake,
        lifecycle: Lifecycle,
        observer: DeliveryObserver | None,
    ) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.pace = pace
        self.senders = senders
        self.releases = releases
        self.wake = wake
        self.lifecycle = lifecycle
        self.observer = observer

    def lend(self, organisation_id: str) -> Lending | None:
        """Slots for one publish of ``organisation_id`` in this process (None: claim
        as usual): what could start right now and a prefetch that waits here (see
        ``FairScheduler.reserve``). Call ``settle()`` on the result whatever happens.
        """
        if not self.lifecycle.accepting:
            return None
        limits = self.scheduler.limits
        paced = int(self.pace.per_second() * limits.prefetch_seconds)
        prefetch = min(limits.handoff_prefetch, max(PREFETCH_FLOOR, paced))
        reservation = self.scheduler.reserve(
            organisation_id, self.settings.max_in_flight + prefetch, prefetch
        )
        if reservation is None:
            return None
        return Lending(self.settings.lease_seconds, reservation, self.adopt)

    async def adopt(self, reservation: Reservation, claimed: list[ClaimedDelivery]) -> int:
        """Settle a lending: give back its reservation, start what it leased."""
        self.scheduler.settle(reservation)
        if claimed and not self.lifecycle.accepting:
            # Stopped during the publish: hand them back to the queue.
            self.releases.add(claimed)
            await self.releases.release()
            return 0
        if claimed:
            if self.observer is not None:
                self.observer.claimed(len(claimed))
            self.senders.dispatch(claimed)
        self.wake.slots_freed()
        return len(claimed)


class Lending:
    """A scheduler reservation lent to one publish (``core.publishing.HandOff``).

    ``take`` runs in the publish thread (only that thread touches the
    reservation until ``settle``); ``handed`` gets the deliveries inserted
    claimed; ``settle`` runs on the event loop after the transaction,
    committed or not, and answers how many deliveries were handed over.
    """

    def __init__(
        self,
        lease_seconds: float,
        reservation: Reservation,
        adopt: Callable[[Reservation, list[ClaimedDelivery]], Awaitable[int]],
    ) -> None:
        self.lease_seconds = lease_seconds
        self._reservation = reservation
        self._adopt = adopt
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
        return await self._adopt(self._reservation, self._claimed)


class Lender(Protocol):
    def lend(self, organisation_id: str) -> Lending | None: ...


class LocalWorker:
    """The publish side's handle on the delivery worker of its own process.

    ``webhooks serve`` makes one, gives ``notify`` and ``lend`` to the API
    (the EventPublisher) and the handle to ``run_worker``, which attaches the
    running worker. Without a running worker ``lend`` answers None and
    publish only wakes (``notify``) whoever claims.
    """

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.worker: Lender | None = None

    def notify(self) -> None:
        self.wakeup.set()

    def lend(self, organisation_id: str) -> Lending | None:
        return self.worker.lend(organisation_id) if self.worker is not None else None

"""The claim loop: claim due deliveries as the scheduler leaves room, then wait.

1. **Claim** a batch of due deliveries (``storage.queue.claim_due``, in a
   thread) as large as the room the scheduler leaves, skipping the
   organisations and configurations it names (``claim_exclusions``), and hand
   them to the senders (``senders.py``). A full batch probably means more is
   due: claim again at once.
2. **Wait** on the ``ClaimWake`` (``wake.py``): a poke (publish in this
   process or LISTEN/NOTIFY from others through ``wakeup``, see
   ``runner.py``; a retry scheduled; stop), room to claim again, the earliest
   retry this worker scheduled, or the poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.delivery.recorder import Releases
from webhooks_service.delivery.scheduler import FairScheduler
from webhooks_service.delivery.senders import Senders
from webhooks_service.delivery.wake import ClaimWake
from webhooks_service.domain import ClaimedDelivery, Clock
from webhooks_service.storage import queue

if TYPE_CHECKING:
    from webhooks_service.observability.metrics import DeliveryObserver

log = logging.getLogger("webhooks_service.delivery.worker")


class ClaimLoop:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Clock,
        scheduler: FairScheduler[ClaimedDelivery],
        wake: ClaimWake,
        senders: Senders,
        releases: Releases,
        observer: DeliveryObserver | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.scheduler = scheduler
        self.wake = wake
        self.senders = senders
        self.releases = releases
        self.observer = observer
        # Claims done (each query, whatever it found): the loop's heartbeat.
        # A test that checks "nothing more happens" waits for one more claim
        # after the event and then looks, instead of sleeping.
        self.claims = 0

    async def watch_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.poke()

    async def forward_wakeups(self, wakeup: asyncio.Event) -> None:
        """Turn the external ``wakeup`` (publish, NOTIFY) into pokes."""
        while True:
            await wakeup.wait()
            wakeup.clear()
            self.wake.poke()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and wait until ``stop`` is set."""
        wake = self.wake
        batch_size = self.settings.claim_batch_size
        while not stop.is_set():
            if self.releases.pending:  # waited too long to start: back to the queue
                await self.releases.release()
            room = wake.room()
            if room >= wake.min_claim() or (room > 0 and not self.senders.running):
                limit = min(room, batch_size)
                wake.claiming()
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
                    await wake.wait(self.settings.poll_interval, self.clock)
                self.claims += 1
                wake.claimed(excluded, len(claimed))
                if claimed and self.observer is not None:
                    self.observer.claimed(len(claimed))
                self.senders.dispatch(claimed)
                if self.releases.pending:
                    await self.releases.release()
                if (
                    len(claimed) == limit
                    and not stop.is_set()
                    and wake.more_due(self.scheduler.claim_exclusions())
                ):
                    continue  # probably more due right now
                wake.room_found()
            else:
                wake.room_needed()
            await wake.wait(wake.wait_seconds(self.clock()), self.clock)

"""The worker's lifecycle and its graceful stop.

``Lifecycle`` is the one place that says what phase the worker is in; the
claim loop, the senders, the recorder and the hand-off read it:

- ``NEW``: built, not yet delivering;
- ``RUNNING``: delivering, and lending slots to publish in this process;
- ``STOPPING``: claims nothing more, lends nothing, senders end after their
  current attempt;
- ``FINAL``: everything is released; the recorder writes the last results
  and ends (``Recorder.close``).

``shut_down`` is the stop itself: release what waits in the scheduler, give
in-flight attempts ``shutdown_grace`` seconds, cancel and release whatever is
still running, and write the releases. After a crash nothing is lost either:
leases expire.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from webhooks_service.delivery.recorder import Releases
from webhooks_service.delivery.scheduler import FairScheduler, Started
from webhooks_service.domain import ClaimedDelivery

log = logging.getLogger("webhooks_service.delivery.worker")


class Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    FINAL = "final"


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.NEW

    @property
    def accepting(self) -> bool:
        """Whether publish may hand deliveries over (``handoff.py``)."""
        return self.phase is Phase.RUNNING

    @property
    def stopping(self) -> bool:
        return self.phase in (Phase.STOPPING, Phase.FINAL)


async def shut_down(
    scheduler: FairScheduler[ClaimedDelivery],
    running: dict[asyncio.Task[None], Started[ClaimedDelivery]],
    releases: Releases,
    grace: float,
) -> None:
    """Release what waits, give the ``running`` senders ``grace`` seconds, release
    the rest."""
    releases.add(scheduler.drain(lambda d: False))
    if running:
        _done, pending = await asyncio.wait(list(running), timeout=grace)
        if pending:
            unfinished = [running[t].item for t in pending]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            releases.add(unfinished)
            log.warning("released %d attempts still running at shutdown", len(unfinished))
    if releases.pending:
        await releases.release()

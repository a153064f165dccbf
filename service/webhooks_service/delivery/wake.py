"""When the claim loop claims next: one object with named states.

The loop (``claim_loop.py``) claims, then waits on a ``ClaimWake``. Whatever
learns of work that could be claimed tells it:

- ``poke()``: new work may be due anywhere (a publish, NOTIFY from another
  process, a retry this worker scheduled, stop, slots freed while full);
- ``attempt_finished(d)``: a slot of ``d``'s organisation or destination
  freed, and the last claim, which came back empty, skipped them: claiming
  again may find something;
- ``slots_freed()``: the loop waits for room (``full``) and there is enough.

``WakeState`` is what has been asked of the loop; ``full``, ``empty_for`` and
``next_retry`` are what it knows:

- ``full``: the loop found too little room to claim and waits for slots;
- ``empty_for``: the exclusions of the last claim that came back empty (None
  once new work may be due anywhere); a claim with the very same exclusions
  would come back empty again, so a SOON call for them is dropped;
- ``next_retry``: the earliest retry this worker scheduled; the loop waits no
  longer than that.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from datetime import datetime

from webhooks_service.config import Settings
from webhooks_service.delivery.scheduler import FairScheduler
from webhooks_service.domain import ClaimedDelivery, Clock

Exclusions = tuple[frozenset[str], frozenset[str]]


class WakeState(enum.Enum):
    """What has been asked of the claim loop."""

    IDLE = "idle"
    """Nothing: wait for the poll interval or the next retry."""
    SOON = "soon"
    """Claim soon: work the last empty claim skipped may have room now. Dropped
    when the exclusions are still those of that empty claim."""
    CLAIM = "claim"
    """Claim now, whatever came back empty before."""
    OWED = "owed"
    """A CLAIM that came while the loop was full: nothing to wake for until a
    slot frees, but the next claim forgets the last empty one."""


class ClaimWake:
    def __init__(self, settings: Settings, scheduler: FairScheduler[ClaimedDelivery]) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.state = WakeState.IDLE
        self.full = False
        self.empty_for: Exclusions | None = None
        self.next_retry: datetime | None = None
        self._event = asyncio.Event()  # set exactly in SOON and CLAIM

    def _to(self, state: WakeState) -> None:
        self.state = state
        if state in (WakeState.SOON, WakeState.CLAIM):
            self._event.set()
        else:
            self._event.clear()

    @property
    def _claim_asked(self) -> bool:
        """A CLAIM was asked and not yet done (acted on now, or owed)."""
        return self.state in (WakeState.CLAIM, WakeState.OWED)

    @property
    def asked(self) -> bool:
        """Whether the loop is asked to claim (SOON or CLAIM): its wait returns."""
        return self._event.is_set()

    # -- room ---------------------------------------------------------------

    def room(self) -> int:
        """Deliveries worth claiming now: the global limit plus one batch of
        prefetched work, minus what the scheduler holds."""
        s = self.settings
        return s.max_in_flight + s.claim_batch_size - self.scheduler.held()

    def min_claim(self) -> int:
        return max(1, min(self.settings.claim_batch_size, self.settings.max_in_flight) // 8)

    # -- what others tell the loop -----------------------------------------------

    def poke(self) -> None:
        """Wake the loop for a claim (new work published, retry due, stop, free slots)."""
        self._to(WakeState.CLAIM)

    def attempt_finished(self, d: ClaimedDelivery) -> None:
        """An attempt of ``d`` freed its slots: claim soon if the last (empty)
        claim skipped its organisation or configuration and would not now."""
        if self.empty_for is None or self.asked:
            return
        orgs, configs = self.empty_for
        if (
            d.organisation_id in orgs or d.config_id in configs
        ) and self.scheduler.claim_exclusions() != self.empty_for:
            self._to(WakeState.CLAIM if self.state is WakeState.OWED else WakeState.SOON)

    def slots_freed(self) -> None:
        """Slots freed: if the loop waits for room and there is enough now, claim."""
        if self.full and self.room() >= self.min_claim():
            self.full = False
            self.poke()

    def retry_at(self, when: datetime) -> None:
        """A retry was scheduled for ``when``: wait no longer than that."""
        if self.next_retry is None or when < self.next_retry:
            self.next_retry = when
            self.poke()

    # -- what the loop does ---------------------------------------------------

    def claiming(self) -> None:
        """The loop claims now: what was asked is being done."""
        if self._claim_asked:
            self.empty_for = None  # new work may be due anywhere
        self._to(WakeState.IDLE)

    def claimed(self, excluded: Exclusions, count: int) -> None:
        if not count:
            self.empty_for = excluded

    def more_due(self, excluded_now: Exclusions) -> bool:
        """After a full batch: whether to claim again at once (probably more due)."""
        return excluded_now != self.empty_for

    def room_found(self) -> None:
        """The loop claimed and waits for what comes, not for slots."""
        self.full = False

    def room_needed(self) -> None:
        """Too little room to claim: wait for slots. A call cannot be acted on
        before a slot frees (which calls ``slots_freed``); left asked, the wait
        would return at once and the loop would spin without ever yielding to
        the attempts. A CLAIM stays owed."""
        self.full = True
        self._to(WakeState.OWED if self._claim_asked else WakeState.IDLE)

    def wait_seconds(self, now: datetime) -> float:
        wait = self.settings.poll_interval
        if self.next_retry is not None:
            until = (self.next_retry - now).total_seconds()
            wait = max(0.0, min(wait, until))
        return wait

    async def wait(self, seconds: float, clock: Clock) -> None:
        """Until asked to claim, at most ``seconds``."""
        exclusions: Callable[[], Exclusions] = self.scheduler.claim_exclusions
        if self.state is WakeState.SOON and exclusions() == self.empty_for:
            self._to(WakeState.IDLE)  # a claim with these very exclusions just came back empty
        if self.asked:
            return
        if not self.full and self.empty_for is not None and exclusions() != self.empty_for:
            return  # what the last empty claim skipped has room since: claim again
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            pass
        if self.next_retry is not None and self.next_retry <= clock():
            self.next_retry = None

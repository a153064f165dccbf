"""The fair scheduler: which claimed delivery starts next, and what to claim.

A plain synchronous object (no I/O, no clock, no asyncio): the worker
``add``s claimed deliveries, asks ``pop`` for the next one that may start,
and reports each finished attempt with ``done``. Unit tests drive it
directly (tests/test_scheduler.py). The rules, from the outside in:

1. **Global limit.** At most ``global_limit`` attempts run at once
   (``max_in_flight``), counting slots reserved for a publish hand-off.
2. **Per-organisation share.** An organisation may run at most
   ``ceil(global_limit / (active + 1))`` attempts, ``active`` being the
   organisations with work running, waiting or reserved here. The ``+ 1``
   keeps a share free for an organisation that is not active yet, so a
   newcomer's first delivery never waits for another tenant's attempts to
   time out; alone, an organisation may use half of the global limit.
   Waiting work starts in round-robin order across organisations (one
   delivery per organisation per turn, whatever their backlogs), so one with
   100,000 due deliveries and one with 1 both progress.
3. **Per-destination limit, adaptive (AIMD).** Within an organisation, work
   is limited per *destination* (scheme, host, port of the URL; many
   configurations pointing at one host share one limit), and round-robin
   across destinations. A destination's limit starts at ``destination_max``
   (``max_in_flight_per_endpoint``); an overload signal (timeout, connection
   error, 429, 503) multiplies it by ``decrease`` (0.5) — at most once per
   window: only an attempt started after the last decrease can decrease it
   again, so 16 timeouts arriving together count once, as in TCP — down to
   ``destination_min``; each fast success (``fast_seconds``) adds
   ``1 / limit`` (about +1 per limit's worth of successes) up to
   ``destination_max``. A destination that keeps timing out therefore holds
   one slot, and its retries cannot crowd out healthy work.
4. **Hand-off from publish.** ``reserve`` answers how many of one
   publish's new deliveries this worker takes straight from the publish
   transaction (inserted already claimed: no claim query re-reads them).
   Two parts: what could start at once (global slots free now, within the
   organisation's share and each destination's limit; counted against the
   global limit like running work), and a prefetch of up to
   ``handoff_prefetch`` more that wait here, per organisation and in all
   (beyond the global limit), for destinations whose limit is not reduced,
   and per destination only as many as it would start within
   ``prefetch_seconds`` at its observed pace (its limit over its mean attempt
   time): a destination backing off or slow gets only what it could start
   soon, the rest stays in the queue for later claims.
5. **What to claim.** ``claim_exclusions`` names the organisations with
   ``org_prefetch`` deliveries already waiting here that could start soon
   (per destination, up to its limit) and the configurations of destinations
   with a full limit's worth waiting: the claim query skips
   their rows, so the next batch holds other tenants' work. ``held`` is what
   counts against claiming more. A *stalled* destination (attempts running,
   none finished while this scheduler started ``stalled_starts`` others, by
   default twice the global limit: a receiver that accepts and never
   answers) has nothing that could start soon, so its pile neither gets its
   organisation's other destinations excluded nor shrinks the claims.

Destinations are keyed per organisation too (``(organisation, Destination)``):
two tenants that happen to use one host are still isolated from each other.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from webhooks_service.domain import Destination


class Signal(enum.Enum):
    """What a finished attempt says about its destination's capacity."""

    SUCCESS = "success"  # 2xx, fast: room for more
    OVERLOAD = "overload"  # connection error, 429, 503: back off
    TIMEOUT = "timeout"  # no answer in time: back off (and it held a slot throughout)
    NEUTRAL = "neutral"  # anything else (4xx, other 5xx, a slow success, not attempted)


BACK_OFF = (Signal.OVERLOAD, Signal.TIMEOUT)


class Schedulable(Protocol):
    @property
    def organisation_id(self) -> str: ...

    @property
    def config_id(self) -> str: ...

    @property
    def destination(self) -> Destination: ...


T = TypeVar("T", bound=Schedulable)
DestKey = tuple[str, Destination]


@dataclass(frozen=True)
class Limits:
    global_limit: int
    destination_max: int
    destination_min: int = 1
    decrease: float = 0.5
    fast_seconds: float = 1.0
    org_prefetch: int = 100
    handoff_prefetch: int = 2000
    prefetch_seconds: float = 1.0
    idle_destinations_kept: int = 10_000
    stalled_starts: int = 0  # rule 5 (0: twice the global limit)


@dataclass
class _Dest:
    limit: float
    running: int = 0
    last_decrease_seq: int = -1
    progress_seq: int = 0  # the scheduler's start count at its last finish (or first start)
    seconds: float = 0.0  # moving mean of its attempts' durations (0: none yet)
    configs: set[str] = field(default_factory=set)

    @property
    def slots(self) -> int:
        return max(1, math.floor(self.limit))


@dataclass
class _Org(Generic[T]):
    running: int = 0
    reserved: int = 0  # hand-off slots that start at once (count like running work)
    prefetch: int = 0  # hand-off slots that will wait here
    waiting: int = 0
    queues: OrderedDict[Destination, deque[T]] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class Started(Generic[T]):
    """A delivery the scheduler let start; give it back to ``done``."""

    item: T
    seq: int


class Reservation:
    """Slots set aside for one publish's hand-off: plain counts, no callbacks.

    The publisher asks ``take(destination)`` for each new delivery of
    ``organisation_id`` while it plans its rows; True means "insert it
    claimed". ``slots`` start at once (per destination what its limit
    leaves); ``prefetch`` more may wait here, for destinations that are not
    backing off. Hand the reservation back with ``FairScheduler.settle``.
    """

    def __init__(
        self,
        organisation_id: str,
        slots: int,
        prefetch: int,
        free: dict[Destination, int],
        paced: dict[Destination, int],
        default: int,
    ):
        self.organisation_id = organisation_id
        self.slots = slots
        self.prefetch = prefetch
        self.reserved = slots
        self.prefetch_reserved = prefetch
        self._free = free
        self._paced = paced  # prefetch left per known destination (others: any)
        self._default = default

    def take(self, destination: Destination) -> bool:
        free = self._free.get(destination, self._default)
        if self.slots > 0 and free > 0:
            self.slots -= 1
            self._free[destination] = free - 1
            return True
        if self.prefetch <= 0:
            return False
        paced = self._paced.get(destination)
        if paced is not None:
            if paced <= 0:
                return False
            self._paced[destination] = paced - 1
        self.prefetch -= 1
        return True


class FairScheduler(Generic[T]):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._orgs: dict[str, _Org[T]] = {}
        self._ready: OrderedDict[str, None] = OrderedDict()  # orgs with waiting work, in turn
        self._dests: dict[DestKey, _Dest] = {}
        self._idle: OrderedDict[DestKey, None] = OrderedDict()  # idle, limit below max
        self._running = 0
        self._reserved = 0
        self._prefetch = 0  # hand-off slots reserved to wait here
        self._waiting = 0
        self._seq = 0
        self._stalled_starts = limits.stalled_starts or 2 * limits.global_limit

    # -- reading ------------------------------------------------------------

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def destination_limit(self, organisation_id: str, destination: Destination) -> float:
        d = self._dests.get((organisation_id, destination))
        return d.limit if d else float(self.limits.destination_max)

    def org_limit(self, newcomer: str | None = None) -> int:
        """The most attempts one organisation may run now (rule 2)."""
        active = len(self._orgs)
        if newcomer is not None and newcomer not in self._orgs:
            active += 1
        return max(1, math.ceil(self.limits.global_limit / (max(active, 1) + 1)))

    def free(self) -> int:
        return self.limits.global_limit - self._running - self._reserved

    # -- claiming -----------------------------------------------------------

    def claim_exclusions(self) -> tuple[frozenset[str], frozenset[str]]:
        """(organisations, configurations) whose due rows the next claim should skip."""
        orgs: set[str] = set()
        configs: set[str] = set()
        for org_id, org in self._orgs.items():
            if self._soon(org_id, org) >= self.limits.org_prefetch:
                orgs.add(org_id)
                continue
            for destination, queue in org.queues.items():
                d = self._dests[(org_id, destination)]
                if len(queue) >= d.slots:
                    configs |= d.configs
        return frozenset(orgs), frozenset(configs)

    def _soon(self, org_id: str, org: _Org[T]) -> int:
        """An organisation's waiting work that could start soon: per destination, up
        to its limit, and nothing for a stalled one (rule 5), so a hanging
        destination's pile cannot get the organisation's other destinations
        excluded from claims."""
        soon = 0
        for dest, q in org.queues.items():
            d = self._dests[(org_id, dest)]
            if not self._stalled(d):
                soon += min(len(q), d.slots)
        return soon

    def _stalled(self, d: _Dest) -> bool:
        """Attempts running and none finished while ``stalled_starts`` others started."""
        return d.running > 0 and self._seq - d.progress_seq > self._stalled_starts

    def held(self) -> int:
        """Deliveries held here that count against claiming more: running, reserved,
        and waiting work up to what could start soon (a destination's limit, an
        organisation's prefetch), so a hanging destination's pile does not shrink
        everyone else's batches."""
        waiting = sum(
            min(self._soon(org_id, org), self.limits.org_prefetch)
            for org_id, org in self._orgs.items()
        )
        return self._running + self._reserved + self._prefetch + waiting

    # -- waiting and starting -----------------------------------------------

    def add(self, item: T) -> None:
        """Queue a claimed delivery; ``pop`` starts it when the rules allow."""
        org = self._org(item.organisation_id)
        d = self._dest(item.organisation_id, item.destination)
        d.configs.add(item.config_id)
        queue = org.queues.get(item.destination)
        if queue is None:
            queue = org.queues[item.destination] = deque()
        queue.append(item)
        org.waiting += 1
        self._waiting += 1
        self._ready[item.organisation_id] = None

    def pop(self) -> Started[T] | None:
        """The next delivery that may start now (rules 1-3), marked running; None if none."""
        if self.free() <= 0:
            return None
        org_limit = self.org_limit()
        # No copies of the dicts iterated: each loop ends as soon as it changes one.
        for org_id, _ in self._ready.items():
            org = self._orgs[org_id]
            if org.running + org.reserved >= org_limit:
                continue
            for destination, queue in org.queues.items():
                d = self._dests[(org_id, destination)]
                if d.running >= d.slots:
                    continue
                item = queue.popleft()
                org.waiting -= 1
                self._waiting -= 1
                if queue:
                    org.queues.move_to_end(destination)
                else:
                    del org.queues[destination]
                if org.queues:
                    self._ready.move_to_end(org_id)
                else:
                    del self._ready[org_id]
                return self._start(org, d, item)
        return None

    def _start(self, org: _Org[T], d: _Dest, item: T) -> Started[T]:
        if not d.running:
            d.progress_seq = self._seq  # nothing running: nothing can be stalled yet
        self._seq += 1
        org.running += 1
        d.running += 1
        self._running += 1
        return Started(item, self._seq)

    def drain(self, keep: Callable[[T], bool]) -> list[T]:
        """Remove and return the waiting deliveries for which ``keep`` is False."""
        removed: list[T] = []
        for org_id in list(self._orgs):
            org = self._orgs[org_id]
            for destination in list(org.queues):
                queue = org.queues[destination]
                kept = deque(x for x in queue if keep(x))
                removed.extend(x for x in queue if not keep(x))
                org.waiting -= len(queue) - len(kept)
                self._waiting -= len(queue) - len(kept)
                if kept:
                    org.queues[destination] = kept
                else:
                    del org.queues[destination]
                    self._maybe_idle(org_id, destination)
            if not org.queues:
                self._ready.pop(org_id, None)
            self._maybe_forget(org_id)
        return removed

    def done(self, started: Started[T], signal: Signal, seconds: float) -> None:
        """An attempt ended: free its slots and adapt its destination's limit (rule 3)."""
        item = started.item
        org = self._orgs[item.organisation_id]
        key = (item.organisation_id, item.destination)
        d = self._dests[key]
        org.running -= 1
        d.running -= 1
        self._running -= 1
        d.progress_seq = self._seq
        lim = self.limits
        if seconds > 0:  # an attempt made (not one given back unstarted)
            d.seconds = seconds if d.seconds == 0 else d.seconds + (seconds - d.seconds) * 0.2
        if signal in BACK_OFF:
            if started.seq > d.last_decrease_seq:
                d.limit = max(float(lim.destination_min), d.limit * lim.decrease)
                d.last_decrease_seq = self._seq
        elif signal is Signal.SUCCESS and seconds <= lim.fast_seconds:
            d.limit = min(float(lim.destination_max), d.limit + 1.0 / d.limit)
        if item.destination not in org.queues:
            self._maybe_idle(item.organisation_id, item.destination)
        self._maybe_forget(item.organisation_id)

    # -- hand-off reservations ------------------------------------------------

    def reserve(
        self, organisation_id: str, at_most: int, prefetch_limit: int | None = None
    ) -> Reservation | None:
        """Slots one publish of ``organisation_id`` may hand over (None: none free).

        What could start at once: global slots free now, within the
        organisation's share; per destination what its limit leaves, and none
        for a destination that already has deliveries waiting (they go first).
        Then a prefetch (rule 4): up to ``handoff_prefetch`` (or the caller's
        ``prefetch_limit``, e.g. what its own pace delivers in
        ``prefetch_seconds``) deliveries waiting here per organisation and in
        all, for destinations not backing off.
        """
        lim = self.limits
        most = lim.handoff_prefetch if prefetch_limit is None else prefetch_limit
        org = self._orgs.get(organisation_id)
        used = (org.running + org.reserved) if org else 0
        slots = max(0, min(self.free(), self.org_limit(organisation_id) - used, at_most))
        pending = (org.waiting + org.prefetch) if org else 0
        held = self._running + self._reserved + self._prefetch + self._waiting + slots
        prefetch = max(
            0,
            min(
                most - pending,
                lim.global_limit + most - held,
                at_most - slots,
            ),
        )
        if slots + prefetch <= 0:
            return None
        free: dict[Destination, int] = {}
        paced: dict[Destination, int] = {}
        for (org_id, destination), d in self._dests.items():
            if org_id == organisation_id:
                free[destination] = d.slots - d.running
                pace = self._paced(d)
                if pace is not None:
                    paced[destination] = pace
        if org is not None:
            for destination, queue in org.queues.items():
                free[destination] = 0
                if destination in paced:
                    paced[destination] = max(0, paced[destination] - len(queue))
        o = self._org(organisation_id)
        o.reserved += slots
        o.prefetch += prefetch
        self._reserved += slots
        self._prefetch += prefetch
        return Reservation(organisation_id, slots, prefetch, free, paced, lim.destination_max)

    def settle(self, reservation: Reservation) -> None:
        """Give a reservation's slots back (before queueing what it handed over)."""
        org = self._orgs[reservation.organisation_id]
        org.reserved -= reservation.reserved
        org.prefetch -= reservation.prefetch_reserved
        self._reserved -= reservation.reserved
        self._prefetch -= reservation.prefetch_reserved
        reservation.reserved = reservation.prefetch_reserved = 0
        self._maybe_forget(reservation.organisation_id)

    # -- bookkeeping ------------------------------------------------------------

    def _org(self, organisation_id: str) -> _Org[T]:
        org = self._orgs.get(organisation_id)
        if org is None:
            org = self._orgs[organisation_id] = _Org()
        return org

    def _dest(self, organisation_id: str, destination: Destination) -> _Dest:
        key = (organisation_id, destination)
        d = self._dests.get(key)
        if d is None:
            d = self._dests[key] = _Dest(float(self.limits.destination_max))
        self._idle.pop(key, None)
        return d

    def _maybe_idle(self, organisation_id: str, destination: Destination) -> None:
        key = (organisation_id, destination)
        d = self._dests.get(key)
        if d is None or d.running:
            return
        if d.limit >= self.limits.destination_max and self._paced(d) is None:
            del self._dests[key]  # nothing learnt worth keeping
            return
        self._idle[key] = None  # remember a reduced limit or a slow pace, up to a bound
        d.configs.clear()
        while len(self._idle) > self.limits.idle_destinations_kept:
            old, _ = self._idle.popitem(last=False)
            del self._dests[old]

    def _paced(self, d: _Dest) -> int | None:
        """A destination's prefetch bound (rule 4); None when it does not bind."""
        lim = self.limits
        if d.limit < lim.destination_max:
            return 0  # backing off: nothing beyond what starts now
        if d.seconds * lim.handoff_prefetch <= lim.prefetch_seconds * d.slots:
            return None  # fast enough to start a whole prefetch within prefetch_seconds
        return int(lim.prefetch_seconds * d.slots / d.seconds)

    def _maybe_forget(self, organisation_id: str) -> None:
        org = self._orgs.get(organisation_id)
        if org is not None and not (org.running or org.reserved or org.prefetch or org.waiting):
            del self._orgs[organisation_id]

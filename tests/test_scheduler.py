"""The fair scheduler's rules, one test each: a plain object, no database, no sockets."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from webhooks_service.delivery.scheduler import FairScheduler, Limits, Signal, Started
from webhooks_service.domain import Destination

_ids = itertools.count(1)


@dataclass(frozen=True)
class Item:
    organisation_id: str
    url: str
    config_id: str = "whc_1"
    n: int = field(default_factory=lambda: next(_ids))

    @property
    def destination(self) -> Destination:
        return Destination.of(self.url)


def scheduler(
    global_limit: int = 16, destination_max: int = 8, **kw: object
) -> FairScheduler[Item]:
    return FairScheduler(Limits(global_limit=global_limit, destination_max=destination_max, **kw))  # type: ignore[arg-type]


def pop_all(s: FairScheduler[Item]) -> list[Started[Item]]:
    out = []
    while (started := s.pop()) is not None:
        out.append(started)
    return out


def test_never_more_than_the_global_limit() -> None:
    s = scheduler(global_limit=4, destination_max=8)
    for org in [f"org_{i}" for i in range(8)]:
        for port in range(5):
            s.add(Item(org, f"http://h:{8000 + port}/"))
    started = pop_all(s)
    assert len(started) == 4 and s.running == 4
    assert s.pop() is None
    s.done(started[0], Signal.SUCCESS, 0.01)
    assert s.pop() is not None and s.running == 4


def test_an_org_with_a_huge_backlog_and_one_with_one_delivery_both_progress() -> None:
    s = scheduler(global_limit=8, destination_max=64)
    for i in range(10_000):
        s.add(Item("org_a", f"http://a{i % 50}.example/"))
    s.add(Item("org_b", "http://b.example/"))
    first = [st.item.organisation_id for st in pop_all(s)]
    assert "org_b" in first[:2]  # round robin: B's only delivery starts in the first turn
    # A does not take B's share either: with B active, A runs at most ceil(8 / 3).
    assert first.count("org_a") == 3


def test_starts_alternate_between_organisations_with_backlogs() -> None:
    s = scheduler(global_limit=100, destination_max=100)
    for _ in range(20):
        s.add(Item("org_a", "http://a.example/"))
        s.add(Item("org_b", "http://b.example/"))
    order = [s.pop() for _ in range(6)]
    orgs = [st.item.organisation_id for st in order if st is not None]
    assert orgs in (["org_a", "org_b"] * 3, ["org_b", "org_a"] * 3)


def test_an_org_alone_leaves_a_share_free_for_a_newcomer() -> None:
    s = scheduler(global_limit=16, destination_max=64)
    for i in range(100):
        s.add(Item("org_a", f"http://a{i}.example/"))
    assert len(pop_all(s)) == 8  # alone: half the global limit
    s.add(Item("org_b", "http://b.example/"))
    started = s.pop()  # no wait for A's attempts to end
    assert started is not None and started.item.organisation_id == "org_b"


def test_configs_pointing_at_one_host_share_one_destination_limit() -> None:
    s = scheduler(global_limit=256, destination_max=4)
    for i in range(100):  # 100 configurations, one receiver
        s.add(Item("org_a", f"http://hang.example:8080/hook/{i}", config_id=f"whc_{i}"))
    s.add(Item("org_a", "https://hang.example/other"))  # another port: another destination
    started = pop_all(s)
    by_dest = {str(st.item.destination) for st in started}
    assert len(started) == 5
    assert by_dest == {"http://hang.example:8080", "https://hang.example:443"}
    # The key is normalised: scheme and host case, default ports.
    assert Destination.of("HTTP://Hang.Example/x") == Destination.of("http://hang.example:80/y")


def test_the_same_host_of_two_organisations_is_two_destinations() -> None:
    s = scheduler(global_limit=256, destination_max=2)
    for _ in range(5):
        s.add(Item("org_a", "http://shared.example/"))
        s.add(Item("org_b", "http://shared.example/"))
    started = pop_all(s)
    assert sorted(st.item.organisation_id for st in started) == ["org_a"] * 2 + ["org_b"] * 2


def test_timeouts_shrink_the_limit_once_per_window_down_to_the_minimum() -> None:
    s = scheduler(global_limit=256, destination_max=8)
    url = "http://slow.example/"
    for _ in range(100):
        s.add(Item("org_a", url))
    window = pop_all(s)
    assert len(window) == 8
    for st in window:  # 8 timeouts of attempts started together count once
        s.done(st, Signal.TIMEOUT, 15.0)
    assert s.destination_limit("org_a", Destination.of(url)) == 4
    limits = []
    for _ in range(4):
        window = pop_all(s)
        for st in window:
            s.done(st, Signal.TIMEOUT, 15.0)
        limits.append((len(window), s.destination_limit("org_a", Destination.of(url))))
    assert limits == [(4, 2), (2, 1), (1, 1), (1, 1)]  # never below destination_min


def test_429_503_and_connection_errors_shrink_too_but_4xx_do_not() -> None:
    s = scheduler(global_limit=256, destination_max=8)
    dest = Destination.of("http://x.example/")
    for signal, expected in ((Signal.NEUTRAL, 8), (Signal.OVERLOAD, 4)):
        s.add(Item("org_a", "http://x.example/"))
        started = s.pop()
        assert started is not None
        s.done(started, signal, 0.01)
        assert s.destination_limit("org_a", dest) == expected


def test_fast_successes_grow_the_limit_back_slow_ones_do_not() -> None:
    s = scheduler(global_limit=256, destination_max=8, fast_seconds=1.0)
    url = "http://recovering.example/"
    dest = Destination.of(url)
    for _ in range(3):  # shrink to the minimum
        s.add(Item("org_a", url))
        for st in pop_all(s):
            s.done(st, Signal.TIMEOUT, 15.0)
    assert s.destination_limit("org_a", dest) == 1
    for _ in range(10):
        s.add(Item("org_a", url))
        one = s.pop()
        assert one is not None
        s.done(one, Signal.SUCCESS, 5.0)  # slow: no growth
    assert s.destination_limit("org_a", dest) == 1
    for _ in range(200):
        s.add(Item("org_a", url))
        for st in pop_all(s):
            s.done(st, Signal.SUCCESS, 0.01)
    assert s.destination_limit("org_a", dest) == 8  # grown back, and capped at the maximum


def test_a_timing_out_destination_cannot_crowd_out_healthy_work() -> None:
    s = scheduler(global_limit=8, destination_max=8)
    hang, healthy = "http://hang.example/", "http://ok.example/"
    for _ in range(1000):
        s.add(Item("org_a", hang))
    for _ in range(3):  # its timeouts come back as retries; the limit keeps halving
        for st in pop_all(s):
            s.done(st, Signal.TIMEOUT, 15.0)
            s.add(Item("org_a", hang))
    stuck = pop_all(s)  # the one slot the timing-out destination keeps
    assert len(stuck) == 1
    for _ in range(10):
        s.add(Item("org_a", healthy))
    started = pop_all(s)
    # Healthy work of the same organisation gets the rest of its share at once.
    assert [st.item.url for st in started] == [healthy] * (s.org_limit() - 1)


def test_claims_skip_organisations_and_destinations_with_enough_waiting() -> None:
    s = scheduler(global_limit=4, destination_max=4, org_prefetch=10)
    for i in range(12):  # 4 destinations: 11 waiting that could start soon
        s.add(Item("org_a", f"http://a{i % 4}.example/", config_id=f"whc_a{i % 3}"))
    for _ in range(6):
        s.add(Item("org_b", "http://b.example/", config_id="whc_b"))
    s.add(Item("org_c", "http://c.example/", config_id="whc_c"))
    pop_all(s)
    orgs, configs = s.claim_exclusions()
    assert orgs == {"org_a"}  # its rows are skipped
    assert configs == {"whc_b"}  # b's destination has a full limit waiting; c's has room


def test_a_hanging_destination_does_not_get_its_organisations_other_work_excluded() -> None:
    s = scheduler(global_limit=256, destination_max=4, org_prefetch=10)
    for _ in range(500):  # a huge pile for one destination
        s.add(Item("org_a", "http://hang.example/", config_id="whc_hang"))
    pop_all(s)
    orgs, configs = s.claim_exclusions()
    assert orgs == set() and configs == {"whc_hang"}  # whc_ok's rows are still claimed
    for i in range(12):  # many destinations with work waiting: now the organisation has enough
        for _ in range(5):
            s.add(Item("org_a", f"http://d{i}.example/", config_id=f"whc_{i}"))
    assert s.claim_exclusions()[0] == {"org_a"}


def test_a_stalled_destination_has_no_work_that_could_start_soon() -> None:
    # A receiver that accepts connections and never answers: its attempts hold
    # their slots and none finishes while the worker starts others (rule 5).
    s = scheduler(global_limit=16, destination_max=4, org_prefetch=5)
    hang, ok = "http://hang.example/", "http://ok.example/"
    for _ in range(8):
        s.add(Item("org_a", hang, config_id="whc_hang"))
    hanging = pop_all(s)
    assert len(hanging) == 4  # 4 running, 4 waiting
    for _ in range(2):
        s.add(Item("org_a", ok, config_id="whc_ok"))

    def healthy_turns(n: int) -> None:  # the healthy destination's attempts finish
        for _ in range(n):
            started = s.pop()
            assert started is not None and started.item.url == ok
            s.done(started, Signal.SUCCESS, 0.01)
            s.add(Item("org_a", ok, config_id="whc_ok"))

    # Not stalled yet: its 4 waiting could start soon; with the 2 healthy ones, 6 >= 5.
    assert s.claim_exclusions()[0] == {"org_a"}
    assert s.held() == 4 + 5
    healthy_turns(28)  # 32 starts in all (twice the global limit), none of the hanging ones done
    assert s.claim_exclusions()[0] == {"org_a"}
    healthy_turns(1)  # one more: stalled
    orgs, configs = s.claim_exclusions()
    assert orgs == set()  # the healthy destination's rows are claimed again ...
    assert configs == {"whc_hang"}  # ... the hanging one's still are not
    assert s.held() == 4 + 2  # its pile no longer shrinks the claims
    s.done(hanging[0], Signal.SUCCESS, 0.01)  # it answers after all: not stalled any more
    assert s.held() == 3 + 5


def test_a_destination_back_from_idle_is_not_stalled() -> None:
    s = scheduler(global_limit=4, destination_max=2)
    slow = "http://slow.example/"
    s.add(Item("org_a", slow))
    first = s.pop()
    assert first is not None
    s.done(first, Signal.TIMEOUT, 15.0)  # a reduced limit: remembered while idle
    for _ in range(20):  # many starts elsewhere meanwhile
        s.add(Item("org_b", "http://b.example/"))
        started = s.pop()
        assert started is not None
        s.done(started, Signal.SUCCESS, 0.01)
    for _ in range(3):
        s.add(Item("org_a", slow))
    assert s.pop() is not None  # its one slot (limit halved to 1)
    assert s.held() == 1 + 1  # running, and one waiting that could start soon


def test_a_reservation_without_prefetch_takes_only_what_could_start_now() -> None:
    s = scheduler(global_limit=8, destination_max=2, handoff_prefetch=0)
    s.add(Item("org_a", "http://busy.example/"))
    s.add(Item("org_a", "http://busy.example/"))
    s.add(Item("org_a", "http://busy.example/"))  # one waits
    pop_all(s)
    r = s.reserve("org_a", at_most=100)
    assert r is not None
    # org_a alone: share 4, 2 running -> 2 slots; none for the destination with waiting work.
    assert r.slots == 2 and r.prefetch == 0
    assert not r.take(Destination.of("http://busy.example/"))
    assert r.take(Destination.of("http://new.example/"))
    assert r.take(Destination.of("http://new.example/"))
    assert not r.take(Destination.of("http://other.example/"))  # the reservation is used up
    assert s.free() == 8 - 2 - 2
    s.settle(r)
    assert s.free() == 6


def test_a_reservation_prefetches_a_publish_batch_beyond_what_starts_now() -> None:
    s = scheduler(global_limit=8, destination_max=2, handoff_prefetch=10)
    r = s.reserve("org_a", at_most=100)
    assert r is not None and r.slots == 4 and r.prefetch == 10  # share 4, then the prefetch
    taken = sum(r.take(Destination.of("http://one.example/")) for _ in range(20))
    assert taken == 2 + 10  # the destination's limit starts now, the prefetch waits
    # The prefetch waits beyond the global limit: it takes no running slot from anyone.
    assert s.free() == 8 - 4
    assert s.reserve("org_b", at_most=100) is not None


def test_the_prefetch_is_bounded_per_organisation_and_in_all() -> None:
    s = scheduler(global_limit=4, destination_max=8, handoff_prefetch=6)
    for _ in range(6):
        s.add(Item("org_a", "http://a.example/"))
    pop_all(s)  # 2 run (share of 4 with room for a newcomer), 4 wait
    r = s.reserve("org_a", at_most=100)
    assert r is not None and r.prefetch == 6 - 4  # org_a already has 4 waiting
    s.settle(r)
    rb = s.reserve("org_b", at_most=100)
    # In all: 4 + 6 held at most; 2 running + 4 waiting + org_b's slots at once.
    assert rb is not None and rb.slots + rb.prefetch + 6 <= 4 + 6


def test_a_destination_backing_off_gets_no_prefetch() -> None:
    s = scheduler(global_limit=16, destination_max=4, handoff_prefetch=100)
    hang = Destination.of("http://hang.example/")
    s.add(Item("org_a", "http://hang.example/"))
    (started,) = pop_all(s)
    s.done(started, Signal.TIMEOUT, 15.0)  # its limit halves: 4 -> 2
    s.add(Item("org_a", "http://hang.example/"))
    pop_all(s)  # one runs again, keeping the destination known
    r = s.reserve("org_a", at_most=100)
    assert r is not None
    assert [r.take(hang) for _ in range(3)] == [True, False, False]  # only what starts now
    assert r.take(Destination.of("http://ok.example/"))  # healthy ones still prefetch


def test_the_prefetch_for_a_slow_destination_is_what_it_starts_within_prefetch_seconds() -> None:
    s = scheduler(global_limit=16, destination_max=4, handoff_prefetch=100, prefetch_seconds=2.0)
    slow = Destination.of("http://slow.example/")
    s.add(Item("org_a", "http://slow.example/"))
    (started,) = pop_all(s)
    s.done(started, Signal.SUCCESS, 1.0)  # 1 s per attempt, 4 at once: 8 started per 2 s
    s.add(Item("org_a", "http://slow.example/"))
    pop_all(s)  # it runs again, so its pace is remembered
    r = s.reserve("org_a", at_most=100)
    assert r is not None
    taken = sum(r.take(slow) for _ in range(50))
    assert taken == 3 + 8  # 3 slots left now, then 2 s worth at its pace
    assert r.take(Destination.of("http://fast.example/"))  # unknown: any of the prefetch

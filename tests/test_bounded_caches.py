"""Caches bounded in bytes, keyed so that re-sealing does not grow them (issue 27.3).

100 configurations with 20 custom headers of 4,096 characters, re-PUT every
round (each Put re-seals the headers: new stored text), one event to all of
them each round: ``webhooks serve`` grew 121 -> 1,104 MiB in 88 s, because
the attempter's secret cache and ``endpoint_headers._opened`` (4,096 entries
each, keyed by the sealed text) kept every re-sealed form. Now the opened
forms are kept per configuration, in a cache bounded in bytes.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import WEBHOOKS
from tests.support.polling import eventually
from tests.support.receiver import Receiver, running_receiver
from tests.support.server import make_org_and_keys
from webhooks_client import AdminClient, PublisherClient
from webhooks_service.caches import ByteBoundedLRU
from webhooks_service.delivery.attempt import OpenedForms
from webhooks_service.storage import db

SECRET_KEY = "k" * 40
CONFIGS = 100
HEADERS = {f"x-custom-{i:02d}": chr(ord("a") + i) * 4096 for i in range(20)}


def test_the_cache_evicts_by_bytes_not_entries() -> None:
    cache: ByteBoundedLRU[str, str] = ByteBoundedLRU(10_000, lambda k, v: len(k) + len(v))
    for i in range(100):
        cache.put(f"k{i:02d}", "v" * 997)
    assert cache.bytes <= 10_000 and len(cache) == 10  # 1,000 bytes each
    assert cache.get("k00") is None and cache.get("k99") == "v" * 997
    cache.put("huge", "x" * 20_000)  # larger than the whole budget: not kept
    assert cache.get("huge") is None and cache.bytes <= 10_000


def test_re_sealing_replaces_the_entry_instead_of_adding_one() -> None:
    opened_calls = 0

    def open_(stored: str) -> str:
        nonlocal opened_calls
        opened_calls += 1
        return stored.removeprefix("sealed:")

    forms = OpenedForms(open_, max_bytes=1_000_000)
    for round_ in range(50):  # the same value sealed anew every round
        stored = f"sealed:{round_}:" + "s" * 100
        assert forms.secret("whc_1", 0, stored) == stored.removeprefix("sealed:")
        assert forms.secret("whc_1", 0, stored) == stored.removeprefix("sealed:")  # a hit
    assert opened_calls == 50 and len(forms.cache) == 1
    headers = '{"x-a":"' + "a" * 4096 + '"}'
    for _ in range(3):
        assert forms.headers("whc_1", "sealed:" + headers) == (("x-a", "a" * 4096),)
    assert opened_calls == 51 and len(forms.cache) == 2


def _rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert match
    return int(match.group(1)) / 1024


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``webhooks serve`` (API + worker) with secrets sealed at rest: (target, pid)."""
    env = {
        **os.environ,
        "WEBHOOKS_DATABASE_URL": database_url,
        "WEBHOOKS_SECRET_KEY": SECRET_KEY,
        "WEBHOOKS_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_GRPC_LISTEN": "127.0.0.1:0",
        "WEBHOOKS_METRICS_LISTEN": "",
        "WEBHOOKS_RATE_LIMIT_PER_SECOND": "0",
        "WEBHOOKS_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([WEBHOOKS, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        found: list[str] = []

        def started() -> bool:
            found[:] = re.findall(r"serving gRPC on (\S+)", log.read_text())
            return bool(found) or proc.poll() is not None

        eventually(started, 60, "webhooks serve to start")
        assert proc.poll() is None and found, log.read_text()
        yield found[0], proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_rss_stays_flat_while_headers_are_re_put(
    serve: tuple[str, int], database_url: str
) -> None:
    target, pid = serve
    engine = db.create_engine(database_url)
    try:
        org, keys = make_org_and_keys(engine)
    finally:
        engine.dispose()
    with (
        running_receiver() as rx,
        AdminClient(target, keys["all"]) as admin,
        PublisherClient(target, keys["events:publish"]) as publisher,
    ):
        url = rx.url("/h")
        ids = [
            admin.put_webhook_config(url=url, event_types=["*"], headers=HEADERS).config.id
            for _ in range(CONFIGS)
        ]
        figures: list[float] = []
        for round_ in range(10):
            for config_id in ids:  # re-PUT, unchanged: every one re-sealed
                admin.put_webhook_config(id=config_id, url=url, event_types=["*"], headers=HEADERS)
            publisher.publish_event(org, "reward.claimed", _example(), id=f"evt_{round_}")
            total = CONFIGS * (round_ + 1)
            eventually(functools.partial(_received, rx, total), 60, f"{total} deliveries")
            figures.append(_rss_mib(pid))
    grown = figures[-1] - figures[1]
    print(f"\nserve RSS per round (MiB): {[round(f) for f in figures]}; grew {grown:.0f}")
    # before: each round kept 100 more sealed and opened header sets, twice
    # (+30 MiB a round: 147 -> 344 MiB in 8 rounds); now the opened forms are
    # replaced in place, the budget 32 MiB
    assert grown < 60, figures


def _received(rx: Receiver, total: int) -> bool:
    return rx.count("/h") >= total


def _example() -> dict[str, object]:
    from tests.support.payloads import example

    return example("reward.claimed")

"""Signing benchmark (``make bench-signing``, part of ``make bench``): ed25519 vs HMAC.

Both in the same run, so that the machine's load weighs on both alike:

1. **sign**: CPU per attempt of ``delivery.attempt.request_for`` (everything
   an attempt computes before the POST: the body, the Standard Webhooks
   headers, each signature) for a ~1 KiB event, with one HMAC secret, one
   ed25519 key, and two of each (a rotation's grace), and the receiver's
   ``webhooks_client.receiver.verify`` of each. Medians of ``--rounds``.
2. **delivery**: the delivery worker draining a backlog of ``--events``
   published events (claim, sign, POST, log) to a fast local receiver, on a
   SQLite file, once with an HMAC endpoint and once with an ed25519 one,
   alternating ``--rounds`` times: this process's CPU seconds per delivery
   (``time.process_time``: the worker runs here; the receiver is a
   subprocess), medians.

Prints both and the ratios ed25519 / HMAC. Not a test: figures depend on the
machine. Run: ``make bench-signing`` or
``.venv/bin/python scripts/bench_signing.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench_delivery import (  # scripts/ is on sys.path when run as a script
    PAD,
    Rx,
    add_config,
    bench_settings,
    claim,
    drain,
    fresh_database,
    publish_backlog,
    receiver_main,
)

from webhooks_client import receiver as helpers
from webhooks_service.config import Settings
from webhooks_service.core import config_validation, event_body, orgs
from webhooks_service.delivery.attempt import OpenedForms, request_for
from webhooks_service.domain import ClaimedDelivery, SigningScheme
from webhooks_service.signing_keys import generate_private_key, public_key_of


def _claimed(secret: str, previous: str | None, payload: str) -> ClaimedDelivery:
    now = datetime.now(UTC)
    return ClaimedDelivery(
        id=1,
        claim_token="t",
        attempt=1,
        organisation_id="org_bench",
        config_id="whc_bench",
        event_pk=1,
        event_id="evt_0123456789abcdef01234567",
        event_type="reward.claimed",
        payload=payload,
        url="http://127.0.0.1:9/",
        secret=secret,
        previous_secret=previous,
        previous_secret_expires_at=None,
        timeout_seconds=None,
        enabled=True,
        lease_until=now,
    )


def _cpu_per_call(fn: Callable[[], object], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n


def sign_phase(rounds: int, n: int) -> dict[str, tuple[float, float]]:
    """{case: (sign µs per attempt, verify µs per request)}, medians of ``rounds``."""
    payload = event_body.build_payload(
        "evt_0123456789abcdef01234567",
        "reward.claimed",
        datetime.now(UTC),
        json.dumps(claim(0, PAD)),
    )
    hmac_a, hmac_b = config_validation.generate_secret(), config_validation.generate_secret()
    ed_a, ed_b = generate_private_key(), generate_private_key()
    cases = {
        "hmac": (hmac_a, None, hmac_a),
        "ed25519": (ed_a, None, public_key_of(ed_a)),
        "hmac, rotating (2)": (hmac_a, hmac_b, hmac_b),
        "ed25519, rotating (2)": (ed_a, ed_b, public_key_of(ed_b)),
    }
    out: dict[str, tuple[float, float]] = {}
    for name, (secret, previous, verifier) in cases.items():
        d = _claimed(secret, previous, payload)
        now = datetime.now(UTC)
        opened = OpenedForms(str)  # stored forms in clear: opening is the identity
        req = request_for(d, opened, now)
        body = req.body
        signs, verifies = [], []
        for _ in range(rounds):
            signs.append(_cpu_per_call(functools.partial(request_for, d, opened, now), n))
            verifies.append(
                _cpu_per_call(
                    functools.partial(helpers.verify, verifier, req.headers, body), n // 4
                )
            )
        out[name] = (statistics.median(signs) * 1e6, statistics.median(verifies) * 1e6)
    return out


async def _delivery_round(
    settings: Settings, url: str, fast_port: int, scheme: SigningScheme, n: int
) -> float:
    """CPU seconds of this process per delivery for one drain of ``n`` deliveries."""
    from webhooks_service.storage import db

    engine = db.create_engine(url)
    try:
        org = orgs.create_org(engine, f"bench-{scheme}").id
        add_config(engine, settings, org, f"http://127.0.0.1:{fast_port}/", scheme)
        await publish_backlog(engine, settings, org, n)
        started = time.process_time()
        await drain(engine, settings, n)  # (each round's organisation is new)
        used = time.process_time() - started
        return used / n
    finally:
        engine.dispose()


def delivery_phase(rx: Rx, fast_port: int, n: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url, engine = fresh_database("sqlite", "", tmp)
        engine.dispose()
        settings = bench_settings(url)
        cpu: dict[str, list[float]] = {"hmac": [], "ed25519": []}
        for _ in range(rounds):
            for name, scheme in (
                ("hmac", SigningScheme.HMAC_SHA256),
                ("ed25519", SigningScheme.ED25519),
            ):
                rx.ask("reset")
                cpu[name].append(asyncio.run(_delivery_round(settings, url, fast_port, scheme, n)))
                if rx.ask("count") < n:
                    raise RuntimeError(f"{name}: the receiver got fewer than {n} requests")
        return {k: statistics.median(v) for k, v in cpu.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="deliveries per drain")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians)")
    parser.add_argument("--calls", type=int, default=4000, help="sign calls per round")
    args = parser.parse_args(argv)

    print("# signing: ed25519 (v1a) vs HMAC-SHA256 (v1), same run")
    signs = sign_phase(args.rounds, args.calls)
    print(f"{'case':<24}{'sign µs/attempt':>18}{'verify µs':>12}")
    for name, (s, v) in signs.items():
        print(f"{name:<24}{s:>18.1f}{v:>12.1f}")
    print(
        f"ratio ed25519/hmac: sign {signs['ed25519'][0] / signs['hmac'][0]:.2f}x, "
        f"verify {signs['ed25519'][1] / signs['hmac'][1]:.2f}x"
    )

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=receiver_main, args=(child,), daemon=True)
    proc.start()
    rx = Rx(parent)
    fast_port, _ = parent.recv()
    try:
        cpu = delivery_phase(rx, fast_port, args.events, args.rounds)
    finally:
        rx.ask("stop")
        proc.join(5)
    hmac_us, ed_us = cpu["hmac"] * 1e6, cpu["ed25519"] * 1e6
    print(f"\n# delivery worker, SQLite, {args.events} deliveries x {args.rounds} rounds")
    print(f"CPU per delivery: hmac {hmac_us:.0f} µs, ed25519 {ed_us:.0f} µs")
    print(f"ratio ed25519/hmac: {ed_us / hmac_us:.2f}x (+{ed_us - hmac_us:.0f} µs per delivery)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the whole delivery path on your machine, in about ten seconds.

1. Starts the service (gRPC API + delivery worker, the code ``webhooks
   serve`` runs) on a fresh SQLite database in a temporary directory, with
   loopback targets allowed and a short retry schedule (0.5 s, 1 s, 2 s).
2. Starts a small local receiver with three endpoints, each verifying the
   signature of every request (401 if one does not verify): ``/orders``
   answers 200, ``/flaky`` answers 500 twice and then recovers, ``/strict``
   answers 400. The demo says so before it starts.
3. Registers the three endpoints through the admin API and publishes one
   typed event of every category (payload messages of payloads.proto)
   through the publisher API; ``/orders`` parses what it receives back into
   the message.
4. Waits until every delivery is final and prints the delivery log (from
   ``ListDeliveryLogs``) as a table, then what the receiver counted, in the
   table's terms. The service's own log lines are kept out of the output
   (errors only), and the database is a temporary file removed on exit.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from aiohttp import web
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from webhooks.v1 import payloads_pb2 as p
from webhooks_client import (
    AdminClient,
    DeliveryLog,
    DeliveryOutcome,
    PublisherClient,
    WebhookVerificationError,
    parse_event,
    verify,
)
from webhooks_service.api.server import start_server
from webhooks_service.config import Settings
from webhooks_service.core import keys, orgs
from webhooks_service.delivery.runner import run_worker
from webhooks_service.delivery.worker import LocalWorker
from webhooks_service.storage import db


def _at(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts


NOW = "2026-11-27T10:15:00Z"
# One typed event of every category: the payload messages of payloads.proto.
EVENTS: list[Message] = [
    p.UserProfileCreated(user_id="usr_42", display_name="Ada", created_at=_at(NOW)),
    p.ActionCompleted(
        user_id="usr_42", action_id="act_7", points_awarded=10, completed_at=_at(NOW)
    ),
    p.ChallengeStarted(user_id="usr_42", challenge_id="chl_3", started_at=_at(NOW)),
    p.RewardClaimed(
        user_id="usr_42", reward_id="rwd_9", points=9_007_199_254_740_993, claimed_at=_at(NOW)
    ),
    p.AchievementUnlocked(
        user_id="usr_42", achievement_id="ach_first_steps", name="First steps", unlocked_at=_at(NOW)
    ),
    p.ReferralConverted(
        referral_id="ref_1",
        referrer_user_id="usr_42",
        referee_user_id="usr_77",
        converted_at=_at(NOW),
    ),
]


ENDPOINTS = {
    "/orders": "answers 200",
    "/flaky": "answers 500 twice (retried after 0.5 s and 1 s), then 200",
    "/strict": "answers 400 (a permanent failure: not retried)",
}


class DemoReceiver:
    """Verifies the signature of every request on every endpoint."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self.verified = 0
        self.rejected = 0

    def _check(self, path: str, request: web.Request, body: bytes) -> bool:
        self.requests[path] += 1
        try:
            verify(self.secrets[path], request.headers, body)
        except WebhookVerificationError:
            self.rejected += 1
            return False
        self.verified += 1
        return True

    async def orders(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._check("/orders", request, body):
            return web.Response(status=401, text="bad signature")
        event, data = parse_event(body)  # the typed payload: RewardClaimed, ...
        if isinstance(data, p.RewardClaimed):
            print(f"  receiver: {event.type} {data.user_id} +{data.points} points (exact)")
        return web.Response(text="thanks")

    async def flaky(self, request: web.Request) -> web.Response:
        if not self._check("/flaky", request, await request.read()):
            return web.Response(status=401, text="bad signature")
        if self.requests["/flaky"] <= 2:
            return web.Response(status=500, text="database is restarting")
        return web.Response(text="back")

    async def strict(self, request: web.Request) -> web.Response:
        if not self._check("/strict", request, await request.read()):
            return web.Response(status=401, text="bad signature")
        return web.Response(status=400, text='{"error":"unsupported schema"}')


def run_in_thread(loop: asyncio.AbstractEventLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return thread


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    # The service logs for operators; the demo's output is the story alone.
    logging.basicConfig(level=logging.ERROR, format="service log: %(message)s")
    tmp = tempfile.TemporaryDirectory(prefix="webhooks-demo-")
    url = f"sqlite:///{tmp.name}/demo.db"
    settings = replace(
        Settings(),
        database_url=url,
        grpc_listen="127.0.0.1:0",
        allowed_target_networks=("127.0.0.0/8", "::1/128"),
        retry_schedule=(0.5, 1.0, 2.0),
        shutdown_grace=2.0,
    )
    engine = db.create_engine(url)
    db.upgrade(engine)
    org = orgs.create_org(engine, "Demo Org").id
    admin_key = keys.create_key(engine, org, ["webhooks:read", "webhooks:write"])[1]
    publish_key = keys.create_key(engine, org, ["events:publish"])[1]

    loop = asyncio.new_event_loop()
    thread = run_in_thread(loop)
    rx = DemoReceiver()
    stop = asyncio.Event()

    async def start() -> tuple[Any, web.AppRunner, int, asyncio.Task[None]]:
        app = web.Application()
        app.router.add_post("/orders", rx.orders)
        app.router.add_post("/flaky", rx.flaky)
        app.router.add_post("/strict", rx.strict)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        local = LocalWorker()  # as `webhooks serve` wires it
        api = await start_server(settings, engine, notify=local.notify, lend=local.lend)
        worker = asyncio.create_task(run_worker(settings, engine, stop, local=local))
        return api, runner, port, worker

    started: Future[Any] = asyncio.run_coroutine_threadsafe(start(), loop)
    api, runner, port, worker = started.result(30)
    base = f"http://127.0.0.1:{port}"
    print(
        f"service on {api.target} (a temporary SQLite database, removed on exit)\n"
        f"receiver on {base}, checking the signature of every request:"
    )
    for path, does in ENDPOINTS.items():
        print(f"  {path:<8} {does}")
    print()

    with (
        AdminClient(api.target, admin_key) as admin,
        PublisherClient(api.target, publish_key) as publisher,
    ):
        subscriptions = {
            "/orders": ["*"],
            "/flaky": ["reward.*", "achievement.*"],
            "/strict": ["user.*"],
        }
        for path, types in subscriptions.items():
            created = admin.put_webhook_config(
                url=f"{base}{path}", event_types=types, description=ENDPOINTS[path]
            )
            rx.secrets[path] = created.secret
            print(f"registered {path:<8} for {', '.join(types)}")
        print()
        for payload in EVENTS:
            r = publisher.publish(org, payload)  # the type is the message's
            name = type(payload).__name__
            print(f"published {name:<22} {r.event_id}  -> {r.deliveries} endpoint(s)")

        expected_final = 6 + 2 + 1  # deliveries: orders x6, flaky x2, strict x1
        deadline = time.monotonic() + 30
        logs: list[DeliveryLog] = []
        while time.monotonic() < deadline:
            logs = list(admin.iter_delivery_logs())
            finals = [e for e in logs if e.outcome != DeliveryOutcome.RETRY_SCHEDULED]
            if len(finals) >= expected_final:
                break
            time.sleep(0.1)

    asyncio.run_coroutine_threadsafe(_stop(stop, worker, api, runner), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    engine.dispose()
    tmp.cleanup()

    paths = {"/orders", "/flaky", "/strict"}
    rows = [["attempt", "event", "type", "endpoint", "#", "status", "outcome", "ms", "error"]]
    for e in reversed(logs):
        endpoint = next((p for p in paths if e.url.endswith(p)), e.url)
        rows.append(
            [
                e.id,
                e.event_id[:16],
                e.event_type,
                endpoint,
                str(e.attempt),
                str(e.response_status_code or "-"),
                str(e.outcome),
                str(e.duration_ms),
                e.error[:40],
            ]
        )
    print("\ndelivery log (oldest first):\n")
    print(table(rows))
    count = {o: sum(1 for e in logs if e.outcome == o) for o in DeliveryOutcome}
    print(
        f"\n{len(logs)} attempts: {count[DeliveryOutcome.DELIVERED]} delivered, "
        f"{count[DeliveryOutcome.RETRY_SCHEDULED]} retried, "
        f"{count[DeliveryOutcome.FAILED]} failed for good, {count[DeliveryOutcome.DEAD]} dead"
    )
    per_path = ", ".join(f"{p} {n}" for p, n in rx.requests.items())
    print(
        f"receiver: got {sum(rx.requests.values())} requests ({per_path}); "
        f"{rx.verified} carried a valid signature, {rx.rejected} did not"
    )
    ok = rx.rejected == 0 and rx.verified == len(logs) and count[DeliveryOutcome.DELIVERED] == 8
    return 0 if ok else 1


async def _stop(stop: asyncio.Event, worker: Any, api: Any, runner: web.AppRunner) -> None:
    stop.set()
    await worker
    await api.stop(grace=1.0)
    await runner.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())

"""Limits, throttles and revocations held by every process of one deployment
(issues 26 and 27): two ``webhooks serve`` processes on one database behind one
real Envoy, on SQLite and PostgreSQL, over gRPC (each process dialled
directly) and REST (through Envoy, round robin over both).

- a key limited to R calls/s gets about R across both, not 2R;
- 20 bad-key calls spread across both get a 429 as with one process;
- a valid key or portal token is served from an address throttled for bad ones;
- a direct gRPC caller cannot name another client address (only the gateway can);
- an organisation's test-event budget is one budget across both;
- a portal session ends with the key that minted it, in both processes within a
  second, and never outlives it; revoked sessions and keys are refused by both
  within a second;
- responses carrying secrets or tokens say ``cache-control: no-store``; CORS
  responses say ``vary: Origin``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta

import grpc
import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.support.envoy import running_gateway
from tests.support.polling import eventually
from tests.support.receiver import running_receiver
from tests.support.serve_process import serve_process
from tests.support.server import TEST_GATEWAY_SECRET, make_key, make_org
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import AdminClient, RateLimitedError, UnauthenticatedError
from webhooks_service.core import keys
from webhooks_service.domain import utcnow
from webhooks_service.storage import db

pytestmark = [pytest.mark.timeout(180), pytest.mark.gateway]

READ, WRITE = keys.SCOPE_WEBHOOKS_READ, keys.SCOPE_WEBHOOKS_WRITE
URL = "https://hooks.example.com/in"
ORIGIN = "https://app.example.com"
CONFIG = {"url": URL, "event_types": ["*"]}


@dataclass
class Deployment:
    targets: list[str]  # the two serve processes' gRPC addresses
    rest: httpx.Client  # Envoy in front of both
    engine: Engine


@contextmanager
def deployment(
    database_url: str, settings: Mapping[str, str] | None = None, *, cors: tuple[str, ...] = ()
) -> Iterator[Deployment]:
    with ExitStack() as stack:
        targets = [stack.enter_context(serve_process(database_url, settings)) for _ in range(2)]
        gw = stack.enter_context(running_gateway(targets, cors_allowed_origins=cors))
        eventually(lambda: gw.healthy_upstreams() >= set(targets), 30, "both upstreams healthy")
        rest = stack.enter_context(httpx.Client(base_url=gw.base_url, timeout=10))
        engine = db.create_engine(database_url)
        stack.callback(engine.dispose)
        yield Deployment(targets, rest, engine)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def grpc_status(target: str, token: str, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    """ListWebhookConfigs over gRPC: "OK" or the status code's name."""
    with grpc.insecure_channel(target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        try:
            stub.ListWebhookConfigs(
                admin_pb2.ListWebhookConfigsRequest(),
                metadata=(("authorization", f"Bearer {token}"), *metadata),
                timeout=10,
            )
        except grpc.RpcError as err:
            return str(err.code().name)
    return "OK"


def rest_status(dep: Deployment, token: str) -> int:
    return dep.rest.get("/webhooks/configs", headers=bearer(token)).status_code


def refused_everywhere_within(dep: Deployment, token: str, seconds: float) -> float:
    """Seconds until both processes (gRPC) and the gateway refuse ``token``."""
    start = time.monotonic()

    def refused(where: str) -> bool:
        if where == "rest":
            return rest_status(dep, token) == 401
        return grpc_status(where, token) == "UNAUTHENTICATED"

    pending = {*dep.targets, "rest"}

    def all_refuse() -> bool:
        nonlocal pending
        pending = {where for where in pending if not refused(where)}
        return not pending

    eventually(all_refuse, seconds, "every process and the gateway to refuse the credential")
    return time.monotonic() - start


# -- 26.3: one limit across processes -----------------------------------------------

RATE, BURST = 5, 5
LIMITED = {"RATE_LIMIT_PER_SECOND": str(RATE), "RATE_LIMIT_BURST": str(BURST)}


def _allowed_in(seconds: float, call: Callable[[int], bool]) -> tuple[int, int, float]:
    """(calls allowed, calls made, seconds taken) calling as fast as possible, from
    8 threads: one caller alone made too few calls to tell on a loaded machine."""
    lock = threading.Lock()
    counts = {"allowed": 0, "made": 0}
    errors: list[BaseException] = []
    start = time.monotonic()

    def caller() -> None:
        try:
            while time.monotonic() - start < seconds:
                with lock:
                    n = counts["made"]
                    counts["made"] += 1
                ok = call(n)
                with lock:
                    counts["allowed"] += ok
        except BaseException as exc:  # an unexpected status: fail the test, not the thread
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return counts["allowed"], counts["made"], time.monotonic() - start


def test_a_key_limit_holds_across_two_processes(database_url: str) -> None:
    with deployment(database_url, LIMITED) as dep:
        org = make_org(dep.engine)
        rest_key, grpc_key = make_key(dep.engine, org, READ), make_key(dep.engine, org, READ)

        def over_rest(_: int) -> bool:
            status = rest_status(dep, rest_key)
            assert status in (200, 429), status
            return status == 200

        def over_grpc(n: int) -> bool:
            status = grpc_status(dep.targets[n % 2], grpc_key)
            assert status in ("OK", "RESOURCE_EXHAUSTED"), status
            return status == "OK"

        for name, call in (("REST", over_rest), ("gRPC", over_grpc)):
            allowed, made, took = _allowed_in(2.0, call)
            ceiling = BURST + RATE * took
            print(f"\n{name}: {allowed} of {made} allowed in {took:.2f} s (R={RATE}/s, B={BURST})")
            # one process alone allows BURST + RATE*t; two unshared would allow twice that
            assert made > 2 * ceiling, "too few calls to tell"
            assert BURST <= allowed <= ceiling + 2


FAILURES = {"AUTH_FAILURE_PER_SECOND": "0.05", "AUTH_FAILURE_BURST": "20"}


def test_bad_keys_spread_over_both_processes_get_429_after_the_burst(database_url: str) -> None:
    with deployment(database_url, FAILURES) as dep:
        org = make_org(dep.engine)
        statuses = [rest_status(dep, f"whk_{n:020x}_nope") for n in range(20)]
        assert statuses == [401] * 20
        refused = dep.rest.get("/webhooks/configs", headers=bearer("whk_nope_nope"))
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["code"] == 8  # RESOURCE_EXHAUSTED
        # The same address over gRPC (the same bucket, whichever process).
        assert {grpc_status(t, "whk_x_nope") for t in dep.targets} == {"RESOURCE_EXHAUSTED"}

        # 27.5: valid credentials from the throttled address are served, at once,
        # though neither process has seen them before.
        fresh = make_key(dep.engine, org, READ, WRITE)
        assert rest_status(dep, fresh) == 200
        assert [grpc_status(t, fresh) for t in dep.targets] == ["OK", "OK"]
        minted = dep.rest.post("/webhooks/portal-sessions", headers=bearer(fresh), json={})
        assert minted.status_code == 200, minted.text
        token = minted.json()["token"]
        assert rest_status(dep, token) == 200
        assert [grpc_status(t, token) for t in dep.targets] == ["OK", "OK"]
        # ... and bad ones are still refused with 429 (no fresh bucket per process)
        assert rest_status(dep, "wpt_nope_nope") == 429


def test_direct_grpc_callers_are_limited_by_their_own_address(database_url: str) -> None:
    """27.6: from loopback but not through the gateway, x-webhooks-client-address
    is not believed: a new value per call buys no fresh bucket."""
    with deployment(database_url, FAILURES) as dep:
        org = make_org(dep.engine)
        codes = [
            grpc_status(
                dep.targets[n % 2],
                f"whk_{n:020x}_nope",
                (("x-webhooks-client-address", f"198.51.100.{n}"),),
            )
            for n in range(30)
        ]
        assert codes.index("RESOURCE_EXHAUSTED") == 20, codes
        assert set(codes[:20]) == {"UNAUTHENTICATED"}
        assert set(codes[20:]) == {"RESOURCE_EXHAUSTED"}
        # Only with the gateway's secret does a caller name another address (Envoy does).
        as_gateway = (
            ("x-webhooks-client-address", "198.51.100.7"),
            ("x-webhooks-gateway-secret", TEST_GATEWAY_SECRET),
        )
        assert grpc_status(dep.targets[0], "whk_y_nope", as_gateway) == "UNAUTHENTICATED"
        wrong = (as_gateway[0], ("x-webhooks-gateway-secret", "guessed"))
        assert grpc_status(dep.targets[1], "whk_y_nope", wrong) == "RESOURCE_EXHAUSTED"
        # A valid key is served from the throttled address (27.5 over gRPC).
        assert grpc_status(dep.targets[1], make_key(dep.engine, org, READ)) == "OK"


def test_the_test_event_budget_is_one_budget_across_processes(database_url: str) -> None:
    settings = {"TEST_EVENTS_PER_MINUTE": "4", "ALLOWED_TARGET_NETWORKS": "127.0.0.0/8"}
    with running_receiver() as rx, deployment(database_url, settings) as dep:
        org = make_org(dep.engine)
        key = make_key(dep.engine, org, READ, WRITE)
        with AdminClient(dep.targets[0], key) as admin:
            config_id = admin.put_webhook_config(url=rx.url("/ping"), event_types=["*"]).config.id
        # Two at once (half a minute's worth), one in each process ...
        for target in dep.targets:
            with AdminClient(target, key) as admin:
                admin.send_test_event(config_id)
        # ... and then neither process has any left, over gRPC or REST.
        for target in dep.targets:
            with AdminClient(target, key) as admin, pytest.raises(RateLimitedError):
                admin.send_test_event(config_id)
        refused = dep.rest.post(f"/webhooks/configs/{config_id}:test", headers=bearer(key), json={})
        assert refused.status_code == 429, refused.text
        assert rx.count("/ping") == 2


# -- 27.1 and 26.4: a session ends with its key; revocation within a second ---------


def test_a_portal_session_ends_with_its_key_in_every_process(database_url: str) -> None:
    with deployment(database_url) as dep:
        org = make_org(dep.engine)
        key = make_key(dep.engine, org, READ, WRITE)
        with AdminClient(dep.targets[0], key) as admin:
            over_grpc = admin.create_portal_session(ttl_seconds=86400).token
        minted = dep.rest.post(
            "/webhooks/portal-sessions", headers=bearer(key), json={"ttl_seconds": 86400}
        )
        assert minted.status_code == 200, minted.text
        over_rest = minted.json()["token"]
        platform = keys.create_platform_key(dep.engine, scopes=[READ, WRITE])[1]
        with AdminClient(dep.targets[1], platform) as admin:
            of_platform = admin.create_portal_session(organisation_id=org).token
        for token in (over_grpc, over_rest, of_platform):
            assert rest_status(dep, token) == 200
            assert [grpc_status(t, token) for t in dep.targets] == ["OK", "OK"]

        keys.revoke_key(dep.engine, key)
        for token in (over_grpc, over_rest):
            took = refused_everywhere_within(dep, token, 1.0)
            print(f"\nsession of a revoked key refused everywhere after {took:.2f} s")
        with (
            AdminClient(dep.targets[0], over_grpc) as admin,
            pytest.raises(UnauthenticatedError) as err,
        ):
            list(admin.list_webhook_configs())
        assert "API key that opened it was revoked" in str(err.value)
        assert rest_status(dep, of_platform) == 200  # another key's session lives on
        keys.revoke_key(dep.engine, platform)
        refused_everywhere_within(dep, of_platform, 1.0)

        # A key that expires in 3 s mints a "24 h" session: it ends with the key.
        row, short = keys.create_key(
            dep.engine, org, [READ, WRITE], expires_in=timedelta(seconds=3)
        )
        assert row.expires_at is not None
        with AdminClient(dep.targets[1], short) as admin:
            session = admin.create_portal_session(ttl_seconds=86400)
        assert session.expires_at <= row.expires_at
        assert rest_status(dep, session.token) == 200
        eventually(
            lambda: (
                rest_status(dep, session.token) == 401
                and {grpc_status(t, session.token) for t in dep.targets} == {"UNAUTHENTICATED"}
            ),
            5,
            "the short key's session to end",
        )
        assert utcnow() - row.expires_at < timedelta(seconds=1.5)


def test_revoked_sessions_and_keys_are_refused_by_both_within_a_second(database_url: str) -> None:
    with deployment(database_url) as dep:
        org = make_org(dep.engine)
        key = make_key(dep.engine, org, READ, WRITE)
        with AdminClient(dep.targets[0], key) as admin:
            session = admin.create_portal_session()
        assert rest_status(dep, session.token) == 200
        assert [grpc_status(t, session.token) for t in dep.targets] == ["OK", "OK"]
        revoked = dep.rest.post(
            f"/webhooks/portal-sessions/{session.session_id}:revoke", headers=bearer(key), json={}
        )
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        took = refused_everywhere_within(dep, session.token, 1.0)
        print(f"\nrevoked session refused everywhere after {took:.2f} s")
        assert rest_status(dep, key) == 200
        keys.revoke_key(dep.engine, key)
        took = refused_everywhere_within(dep, key, 1.0)
        print(f"revoked key refused everywhere after {took:.2f} s")


# -- 27.8: no-store and Vary: Origin --------------------------------------------------


def _initial_metadata(target: str, key: str, method: str, request: object) -> dict[str, str]:
    with grpc.insecure_channel(target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        _, call = getattr(stub, method).with_call(
            request, metadata=(("authorization", f"Bearer {key}"),), timeout=10
        )
        return {k: str(v) for k, v in call.initial_metadata()}


def test_secrets_are_answered_no_store_and_cors_varies_by_origin(database_url: str) -> None:
    with deployment(database_url, cors=(ORIGIN,)) as dep:
        org = make_org(dep.engine)
        key = make_key(dep.engine, org, READ, WRITE)
        target = dep.targets[0]
        put = admin_pb2.PutWebhookConfigRequest(url=URL, event_types=["*"])
        meta = _initial_metadata(target, key, "PutWebhookConfig", put)
        assert meta.get("cache-control") == "no-store"
        with AdminClient(target, key) as admin:
            config_id = admin.put_webhook_config(url=URL, event_types=["*"]).config.id
        rotate = admin_pb2.RotateWebhookSecretRequest(config_id=config_id)
        meta = _initial_metadata(target, key, "RotateWebhookSecret", rotate)
        assert meta.get("cache-control") == "no-store"
        create = admin_pb2.CreatePortalSessionRequest()
        meta = _initial_metadata(target, key, "CreatePortalSession", create)
        assert meta.get("cache-control") == "no-store"
        listing = admin_pb2.ListWebhookConfigsRequest()
        assert "cache-control" not in _initial_metadata(target, key, "ListWebhookConfigs", listing)

        headers = bearer(key)
        for response in (
            dep.rest.put(
                "/webhooks/configs", headers=headers, json={"url": URL, "event_types": ["*"]}
            ),
            dep.rest.post(f"/webhooks/configs/{config_id}:rotate-secret", headers=headers, json={}),
            dep.rest.post("/webhooks/portal-sessions", headers=headers, json={}),
        ):
            assert response.status_code == 200, response.text
            assert response.headers.get("cache-control") == "no-store", response.request.url
        assert "cache-control" not in dep.rest.get("/webhooks/configs", headers=headers).headers

        # CORS: what is answered depends on Origin, so caches must key on it.
        cors = dep.rest.get("/webhooks/configs", headers={**headers, "origin": ORIGIN})
        assert cors.status_code == 200
        assert cors.headers["access-control-allow-origin"] == ORIGIN
        assert "origin" in cors.headers.get("vary", "").lower()
        preflight = dep.rest.options(
            "/webhooks/configs",
            headers={"origin": ORIGIN, "access-control-request-method": "PUT"},
        )
        assert preflight.headers.get("access-control-allow-origin") == ORIGIN
        assert "origin" in preflight.headers.get("vary", "").lower()
        other = dep.rest.get(
            "/webhooks/configs", headers={**headers, "origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        assert "origin" in other.headers.get("vary", "").lower()

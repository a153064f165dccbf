"""The dashboard in a real browser: headless Chromium (Playwright) against the
real Envoy gateway, a real API server with its delivery worker, and a local
receiver. It does what an admin does: opens the portal-session link, creates
an endpoint, watches attempts arrive, opens one, retries a failure, sends a
test event, and never sees another organisation's endpoints.

Screenshots of every screen (1280 px and 360 px wide) are written to
artifacts/screenshots/ (``make screenshots``: docs/screenshots/, which
docs/dashboard.md shows), each after an axe-core check of the screen
(tests/support/browser.py): no serious or critical violation.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import _truncate_all
from tests.support.browser import chromium, screenshot
from tests.support.envoy import free_listen_address, running_gateway
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Reply, running_receiver
from tests.support.server import RunningServer, make_org_and_keys, running_server
from webhooks_client import AdminClient, PublisherClient, make_publish_request
from webhooks_service.gateway import EnvoyProcess

pytestmark = [pytest.mark.gateway, pytest.mark.slow, pytest.mark.timeout(240)]

OTHER_ORG_URL = "https://other-organisation.example.com/hook"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 360, "height": 780}


@dataclass
class Stack:
    srv: RunningServer
    gw: EnvoyProcess
    rx: Receiver
    browser: Any
    org: str
    keys: dict[str, str]

    def portal_url(self, **body: Any) -> str:
        resp = httpx.post(
            f"{self.gw.base_url}/webhooks/portal-sessions",
            headers={"authorization": f"Bearer {self.keys['all']}"},
            json=body,
        )
        assert resp.status_code == 200, resp.text
        url: str = resp.json()["url"]
        return url

    def publish(self, type_: str = "reward.claimed") -> str:
        with PublisherClient(self.srv.target, self.keys["events:publish"]) as pub:
            return pub.publish_event(self.org, type_, example(type_)).event_id


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def stack(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The whole stack, once on SQLite and once on PostgreSQL (each test makes
    organisations of its own, so the session's PostgreSQL database is shared by
    this module's tests; emptied first: whatever module ran before it in this
    process, e.g. a secret sealed with a key this server lacks, would stop it)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        _truncate_all(url)
    else:
        path = tmp_path_factory.mktemp("browser-db") / "webhooks.db"
        shutil.copyfile(sqlite_template, path)
        url = f"sqlite:///{path}"
    # The dashboard links the server mints name the gateway's configured address
    # (gateway_listen), never the request's Host: the gateway listens there.
    listen = free_listen_address()
    settings = {"retry_schedule": (30.0,), "poll_interval": 0.2, "gateway_listen": listen}
    with (
        chromium() as browser,
        running_receiver() as rx,
        running_server(url, settings, worker=True) as srv,
        running_gateway([srv.target], listen=listen) as gw,
    ):
        org, keys = make_org_and_keys(srv.engine, "Acme")
        yield Stack(srv, gw, rx, browser, org, keys)


@pytest.fixture(scope="module")
def other_org(stack: Stack) -> str:
    """Another organisation with an endpoint of its own."""
    _, keys = make_org_and_keys(stack.srv.engine, "Other")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        admin.put_webhook_config(url=OTHER_ORG_URL, event_types=["*"], description="not yours")
    return OTHER_ORG_URL


def new_page(stack: Stack, viewport: dict[str, int]) -> Any:
    from playwright.sync_api import expect

    # The log polls every 2.5 s and the machine may be busy: wait up to 15 s.
    expect.set_options(timeout=15_000)
    context = stack.browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    return page


def wait_for_outcome(stack: Stack, event_id: str, outcome: str, timeout: float = 15) -> None:
    """Until the newest attempt of ``event_id`` has ``outcome`` (the log is written in batches)."""
    wait_for_outcome_of(stack, stack.keys["all"], event_id, outcome, timeout)


def wait_for_outcome_of(
    stack: Stack, key: str, event_id: str, outcome: str, timeout: float = 15
) -> None:
    """:func:`wait_for_outcome` in the organisation of ``key``."""
    with AdminClient(stack.srv.target, key) as admin:

        def newest_has_outcome() -> bool:
            logs = admin.list_delivery_logs(event_id=event_id).logs
            return bool(logs) and logs[0].outcome.name == outcome.removeprefix("OUTCOME_")

        eventually(newest_has_outcome, timeout, f"{event_id}'s newest attempt to be {outcome}")


def portal_for(stack: Stack, key: str, **body: Any) -> str:
    """A portal-session link for the organisation of ``key``."""
    resp = httpx.post(
        f"{stack.gw.base_url}/webhooks/portal-sessions",
        headers={"authorization": f"Bearer {key}"},
        json=body,
    )
    assert resp.status_code == 200, resp.text
    url: str = resp.json()["url"]
    return url


def held(config: Any) -> dict[str, Any]:
    """What the server holds of a configuration, less what changes by itself."""
    return {
        "id": config.id,
        "url": config.url,
        "event_types": list(config.event_types),
        "enabled": config.enabled,
        "description": config.description,
        "secret_hint": config.secret_hint,
        "header_names": list(config.header_names),
        "disabled_reason": config.disabled_reason,
    }


def assert_fits(box: Any) -> None:
    """The whole value is visible: nothing scrolled out of the box."""
    sizes = box.evaluate("el => [el.scrollWidth, el.clientWidth, el.scrollHeight, el.clientHeight]")
    assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], sizes


def signin_heading(page: Any) -> Any:
    return page.get_by_role("heading", name="Sign in to your dashboard", exact=True)


def test_admin_journey(stack: Stack, other_org: str) -> None:
    from playwright.sync_api import expect

    rx = stack.rx
    # first two events delivered, the third refused for good (400), then fine again
    refused = Reply(400, b'{"error": "unknown user"}')
    rx.program("/hook", Reply(200), Reply(200), refused, Reply(200))
    page = new_page(stack, DESKTOP)
    url = stack.portal_url()
    token = parse_qs(urlsplit(url).fragment)["token"][0]
    page.goto(url)
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    # signed in; the token left the address bar and is in this tab's sessionStorage only
    assert token not in page.url
    assert page.evaluate("() => localStorage.length") == 0
    stored = page.evaluate("() => ({...sessionStorage})")
    assert stored["webhooks.dashboard.token"] == token
    assert token not in stored["webhooks.dashboard.session"]  # expiry and scopes only
    expect(page.get_by_text("No endpoints yet")).to_be_visible()

    # a field violation is shown beside the URL field
    page.get_by_role("button", name="Add endpoint").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Endpoint URL").fill("ftp://x")
    dialog.get_by_label("All events").check()
    dialog.get_by_role("button", name="Create endpoint").click()
    url_error = dialog.locator("[data-field=url] .field-error")
    expect(url_error).to_be_visible()
    expect(url_error).to_contain_text(re.compile("http", re.I))
    expect(dialog.get_by_label("Endpoint URL")).to_have_attribute("aria-invalid", "true")
    expect(dialog.locator("[data-field=event_types] .field-error")).to_be_hidden()

    # create it for real: the generated secret is shown once
    dialog.get_by_label("Endpoint URL").fill(rx.url("/hook"))
    dialog.get_by_label("Description").fill("Rewards service")
    dialog.get_by_role("button", name="Create endpoint").click()
    secret_dialog = page.get_by_role("dialog", name="Signing secret — shown once")
    expect(secret_dialog.get_by_label("Secret")).to_have_value(re.compile(r"^whsec_"))
    assert_fits(secret_dialog.get_by_label("Secret"))
    screenshot(page, "secret-desktop", full_page=False)
    secret_dialog.get_by_role("button", name="I have stored it").click()
    card = page.locator("article.endpoint")
    expect(card).to_have_count(1)
    expect(card).to_contain_text(rx.url("/hook"))
    assert other_org not in page.content()

    # the delivery log: attempts appear without a reload
    page.get_by_role("link", name="Delivery log").click()
    expect(page.get_by_role("heading", name="Delivery log", exact=True)).to_be_visible()
    rows = page.locator(".log-row")
    stack.publish()
    stack.publish("user.authenticated")
    rx.wait_for(2, path="/hook")
    expect(rows).to_have_count(2)
    expect(page.locator(".log-row[data-outcome=OUTCOME_DELIVERED]")).to_have_count(2)
    failed_event = stack.publish("reward.redeemed")
    rx.wait_for(3, path="/hook")
    failed = page.locator(".log-row[data-outcome=OUTCOME_FAILED]")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("HTTP 400")

    # the attempt's detail
    failed.get_by_role("button").click()
    detail = page.get_by_role("dialog", name="Delivery attempt")
    expect(detail).to_contain_text(rx.url("/hook"))
    expect(detail).to_contain_text(failed_event)
    expect(detail.get_by_label("Request body")).to_contain_text('"type": "reward.redeemed"')
    expect(detail.get_by_label("Response body")).to_contain_text("unknown user")
    expect(detail).to_contain_text("none scheduled")
    screenshot(page, "attempt-failed-desktop", full_page=False)

    # retry it: the new attempt appears
    detail.get_by_role("button", name="Retry delivery").click()
    expect(detail.get_by_role("status")).to_contain_text("Retry scheduled")
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    rx.wait_for(4, path="/hook")
    retried = page.locator(".log-row[data-outcome=OUTCOME_DELIVERED]", has_text="reward.redeemed")
    expect(retried).to_have_count(1)
    expect(retried).to_contain_text("#2")
    expect(rows).to_have_count(4)

    # filters: outcome, then event id
    page.get_by_label("Outcome").select_option(label="Failed")
    expect(rows).to_have_count(1)
    page.get_by_label("Outcome").select_option(label="Any outcome")
    expect(rows).to_have_count(4)
    page.get_by_label("Event id").fill(failed_event)
    page.get_by_label("Event id").press("Enter")
    expect(rows).to_have_count(2)
    page.get_by_label("Event id").fill("")
    page.get_by_label("Event id").press("Enter")
    expect(rows).to_have_count(4)

    # send a test event from the endpoint, and see its attempt in the log
    page.get_by_role("link", name="Endpoints").click()
    page.get_by_role("button", name="Send test event").click()
    tester = page.get_by_role("dialog", name="Send a test event")
    tester.get_by_label("Event type").select_option("")  # the ping
    tester.get_by_role("button", name="Send test event").click()
    expect(tester.get_by_role("status")).to_contain_text("Test event delivered: HTTP 200")
    page.keyboard.press("Escape")
    expect(card.get_by_role("status")).to_contain_text("Test event delivered: HTTP 200")
    page.get_by_role("link", name="Delivery log").click()
    expect(page.locator(".log-row", has_text="webhook.ping")).to_have_count(1)

    # only this organisation's endpoints, in the list and the log's filter
    assert other_org not in page.content()
    options = page.get_by_label("Endpoint", exact=True).locator("option")
    expect(options).to_have_text(["All endpoints", rx.url("/hook").removeprefix("http://")])

    # edit: event types chosen from the catalog, shown with their descriptions
    with AdminClient(stack.srv.target, stack.keys["all"]) as admin:
        catalog = {t.name: t.description for t in admin.list_event_types()}
    page.get_by_role("link", name="Endpoints").click()
    card.get_by_role("button", name="Edit").click()
    form = page.get_by_role("dialog", name="Edit endpoint")
    expect(form.get_by_text(catalog["user.authenticated"], exact=True)).to_be_visible()
    form.get_by_label("All events").uncheck()
    form.get_by_label("All reward events").check()
    expect(form.get_by_label("reward.claimed")).to_be_disabled()  # covered by reward.*
    form.get_by_label("user.authenticated").check()
    screenshot(page, "form-desktop", full_page=False)
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_be_hidden()
    expect(card.locator(".chip")).to_have_text(["user.authenticated", "reward.*"])

    # rotate the secret: the new one is shown once, the hint follows it
    hint = card.locator(".endpoint-meta").inner_text()
    card.get_by_role("button", name="Rotate secret").click()
    page.get_by_role("dialog", name="Rotate the signing secret?").get_by_role(
        "button", name="Rotate secret"
    ).click()
    rotated = page.get_by_role("dialog", name="Signing secret — shown once")
    expect(rotated).to_contain_text("The previous secret also signs until")
    new_secret = rotated.get_by_label("Secret").input_value()
    assert new_secret.startswith("whsec_")
    rotated.get_by_role("button", name="I have stored it").click()
    expect(card.locator(".endpoint-meta")).not_to_have_text(hint)
    expect(card.locator(".endpoint-meta")).to_contain_text(new_secret[:8])

    # disable; the API's refusal of a test event is shown in words beside the button
    card.get_by_role("button", name="Disable").click()
    page.get_by_role("dialog", name="Disable this endpoint?").get_by_role(
        "button", name="Disable endpoint"
    ).click()
    expect(card.locator(".pill")).to_have_text("Disabled")
    card.get_by_role("button", name="Send test event").click()
    tester.get_by_role("button", name="Send test event").click()
    expect(tester.get_by_role("alert")).to_contain_text(re.compile("disabled", re.I))
    page.keyboard.press("Escape")
    card.get_by_role("button", name="Enable").click()
    expect(card.locator(".pill")).not_to_have_text("Disabled")

    # replay a failed delivery over a time range
    rx.program("/hook", refused, Reply(200))
    before = rx.count("/hook")
    lost = stack.publish("user.authenticated")
    wait_for_outcome(stack, lost, "OUTCOME_FAILED")
    card.get_by_role("button", name="Replay failed…").click()
    replay = page.get_by_role("dialog", name="Replay failed deliveries")
    screenshot(page, "replay-desktop", full_page=False)
    since = replay.get_by_label("From").input_value()
    until_default = replay.get_by_label("Until").input_value()
    replay.get_by_label("From").fill("2030-01-02T00:00")
    replay.get_by_label("Until").fill("2030-01-01T00:00")
    replay.get_by_role("button", name="Replay").click()
    expect(replay.locator("[data-field=until] .field-error")).to_contain_text("after")
    replay.get_by_label("From").fill(since)
    replay.get_by_label("Until").fill("2099-01-01T00:00")
    replay.get_by_role("button", name="Replay").click()
    expect(replay.locator("[data-field=until] .field-error")).to_contain_text("31 days")
    replay.get_by_label("Until").fill(until_default)
    replay.get_by_role("button", name="Replay").click()
    expect(replay.get_by_role("status")).to_contain_text("1 delivery is being attempted again")
    rx.wait_for(before + 2, path="/hook")
    page.keyboard.press("Escape")
    wait_for_outcome(stack, lost, "OUTCOME_DELIVERED")

    # a second endpoint that is down: it shows as failing, its attempts as retrying
    rx.program("/crm", Reply(503, b"upstream unavailable"))
    with AdminClient(stack.srv.target, stack.keys["all"]) as admin:
        admin.put_webhook_config(
            url=rx.url("/crm"), event_types=["reward.*"], description="CRM sync"
        )
    stack.publish("reward.claimed")
    stack.publish("reward.distributed")
    rx.wait_for(2, path="/crm")
    expect(page.locator("article.endpoint")).to_have_count(2)
    expect(page.locator(".pill", has_text="Failing")).to_have_count(1)
    screenshot(page, "endpoints-desktop")
    page.get_by_role("link", name="Delivery log").click()
    expect(page.locator(".log-row[data-outcome=OUTCOME_RETRY_SCHEDULED]")).to_have_count(2)
    screenshot(page, "log-desktop")
    assert page.js_errors == []


def test_phone_width_and_keyboard(stack: Stack, other_org: str) -> None:
    from playwright.sync_api import expect

    page = new_page(stack, PHONE)
    page.goto(stack.portal_url())
    expect(page.locator("article.endpoint").first).to_be_visible()
    assert other_org not in page.content()
    # nothing wider than the screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "endpoints-phone")
    # every control has a label
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
             .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                           && !el.textContent.trim() && el.type !== 'hidden')
             .map(el => el.outerHTML)"""
    )
    assert unlabelled == []
    # keyboard only: reach "Add endpoint", open the form, close it with Escape
    add = page.get_by_role("button", name="Add endpoint")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "add-endpoint":
            break
    expect(add).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add an endpoint")
    expect(dialog.get_by_label("Endpoint URL")).to_be_focused()
    expect(dialog.get_by_label("All reward events")).to_be_visible()
    screenshot(page, "form-phone", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # the secret fits its box at 360 px too
    page.locator("article.endpoint").first.get_by_role("button", name="Rotate secret").click()
    page.get_by_role("dialog", name="Rotate the signing secret?").get_by_role(
        "button", name="Rotate secret"
    ).click()
    secret_box = page.get_by_role("dialog", name="Signing secret — shown once").get_by_label(
        "Secret"
    )
    expect(secret_box).to_have_value(re.compile(r"^whsec_"))
    assert_fits(secret_box)
    screenshot(page, "secret-phone", full_page=False)
    page.get_by_role("button", name="I have stored it").click()

    page.get_by_role("link", name="Delivery log").click()
    expect(page.locator(".log-row").first).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "log-phone")
    page.locator(".log-row").first.get_by_role("button").click()
    expect(page.get_by_role("dialog", name="Delivery attempt")).to_be_visible()
    screenshot(page, "attempt-phone", full_page=False)
    page.keyboard.press("Escape")
    page.get_by_role("link", name="Event types").click()
    expect(page.locator("details.catalog-type").first).to_be_visible()
    page.locator("details.catalog-type summary").first.click()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "catalog-phone")
    assert page.js_errors == []


def test_sign_in_with_a_key_and_session_end(stack: Stack) -> None:
    from playwright.sync_api import expect

    page = new_page(stack, DESKTOP)
    page.goto(f"{stack.gw.base_url}/")
    expect(
        page.get_by_role("heading", name="Sign in to your dashboard", exact=True)
    ).to_be_visible()
    screenshot(page, "signin-desktop")
    page.get_by_label("API key").fill("whk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")
    page.get_by_label("API key").fill(stack.keys["all"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    assert page.evaluate("() => localStorage.length") == 0
    page.get_by_role("button", name="Sign out").click()
    expect(
        page.get_by_role("heading", name="Sign in to your dashboard", exact=True)
    ).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0

    # a portal session revoked by the platform signs the dashboard out, saying why
    resp = httpx.post(
        f"{stack.gw.base_url}/webhooks/portal-sessions",
        headers={"authorization": f"Bearer {stack.keys['all']}"},
        json={},
    ).json()
    page.goto(resp["url"])
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    with AdminClient(stack.srv.target, stack.keys["all"]) as admin:
        admin.revoke_portal_session(resp["session_id"])
    expect(page.get_by_role("alert")).to_contain_text("portal session revoked", timeout=20_000)
    expect(
        page.get_by_role("heading", name="Sign in to your dashboard", exact=True)
    ).to_be_visible()
    assert page.js_errors == []


def test_log_pages_and_filters_by_endpoint(stack: Stack) -> None:
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Paging")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        busy = admin.put_webhook_config(url=stack.rx.url("/busy"), event_types=["reward.*"])
        quiet = admin.put_webhook_config(url=stack.rx.url("/quiet"), event_types=["user.*"])
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        pub.publish_events(
            [make_publish_request(org, "reward.claimed", example()) for _ in range(30)]
            + [make_publish_request(org, "user.opted_in", example("user.opted_in"))]
        )
    stack.rx.wait_for(30, path="/busy")
    stack.rx.wait_for(1, path="/quiet")
    resp = httpx.post(
        f"{stack.gw.base_url}/webhooks/portal-sessions",
        headers={"authorization": f"Bearer {keys['all']}"},
        json={"scopes": ["webhooks:read"]},
    )
    page = new_page(stack, DESKTOP)
    page.goto(resp.json()["url"])
    page.get_by_role("link", name="Delivery log").click()
    rows = page.locator(".log-row")
    expect(rows).to_have_count(25)  # one page
    page.get_by_role("button", name="Load older attempts").click()
    expect(rows).to_have_count(31)
    expect(page.get_by_role("button", name="Load older attempts")).to_be_hidden()
    page.get_by_label("Endpoint", exact=True).select_option(busy.config.id)
    expect(rows).to_have_count(25)
    page.get_by_label("Endpoint", exact=True).select_option(quiet.config.id)
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("user.opted_in")
    # the endpoint's "Delivery log" button lands on the same filtered view
    page.get_by_role("link", name="Endpoints").click()
    page.locator("article.endpoint", has_text="/quiet").get_by_role(
        "button", name="Delivery log"
    ).click()
    expect(page.get_by_label("Endpoint", exact=True)).to_have_value(quiet.config.id)
    expect(rows).to_have_count(1)
    # a read-only session shows no controls that change anything
    page.get_by_role("link", name="Endpoints").click()
    expect(page.locator("#read-only")).to_have_text("Read-only")
    expect(page.locator("article.endpoint")).to_have_count(2)
    for name in ("Add endpoint", "Edit", "Disable", "Rotate secret", "Send test event", "Delete"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_text("Portal session · until")).to_be_visible()
    assert page.js_errors == []


def test_session_end_is_announced_then_signs_out(stack: Stack) -> None:
    from playwright.sync_api import expect

    page = new_page(stack, DESKTOP)
    page.clock.install()
    page.goto(stack.portal_url(ttl_seconds=240))
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Your session ends")).to_be_visible()
    page.clock.fast_forward("04:05")
    expect(signin_heading(page)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Your portal session expired at")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.js_errors == []


def test_saving_an_unchanged_endpoint_keeps_everything(stack: Stack) -> None:
    """Open each endpoint's dialog and save without a change: the request is the
    configuration as held (headers absent, so kept), and the server holds the
    same afterwards; the custom headers' values still reach the receiver."""
    from playwright.sync_api import expect

    _, keys = make_org_and_keys(stack.srv.engine, "Round trip")
    rx = stack.rx
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        admin.put_webhook_config(
            url=rx.url("/round/all"),
            event_types=["*", "webhook.*"],
            description="Everything, and the service's own events",
            headers={"authorization": "Bearer rt-s3cret", "x-route": "blue"},
        )
        admin.put_webhook_config(
            url=rx.url("/round/paused"),
            event_types=["reward.claimed", "user.*", "webhook.endpoint_disabled"],
            enabled=False,
        )
        admin.put_webhook_config(
            url=rx.url("/round/covered"),
            event_types=["reward.*", "reward.claimed", "*"],
            description="  spaced out  ",
        )
        before = {c.id: held(c) for c in admin.list_webhook_configs()}
    resp = httpx.get(
        f"{stack.gw.base_url}/webhooks/configs",
        headers={"authorization": f"Bearer {keys['all']}"},
    )
    rest = {c["id"]: c for c in resp.json()["configs"]}  # what the dashboard was given
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    cards = page.locator("article.endpoint")
    expect(cards).to_have_count(3)
    for config_id, config in before.items():
        card = page.locator(f"article.endpoint[data-config-id={config_id}]")
        card.get_by_role("button", name="Edit").click()
        form = page.get_by_role("dialog", name="Edit endpoint")
        expect(form.get_by_label("Endpoint URL")).to_have_value(config["url"])
        with page.expect_request(
            lambda r: r.method == "PUT" and r.url.endswith("/webhooks/configs")
        ) as sent:
            form.get_by_role("button", name="Save changes").click()
        expect(form).to_be_hidden()
        body = sent.value.post_data_json
        # every field sent is the server's own value; nothing else (headers left out: kept)
        assert {"id", "url", "event_types", "description", "enabled"} <= body.keys()
        assert body == {k: rest[config_id][k] for k in body}
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        after = {c.id: held(c) for c in admin.list_webhook_configs()}
        assert after == before
        all_id = next(c for c, v in before.items() if v["url"].endswith("/round/all"))
        admin.send_test_event(all_id)
    got = rx.wait_for(1, path="/round/all")[-1]
    assert got.headers["authorization"] == "Bearer rt-s3cret"
    assert got.headers["x-route"] == "blue"
    assert page.js_errors == []


def test_endpoint_headers_disable_delete(stack: Stack) -> None:
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Endpoints")
    rx = stack.rx
    rx.program("/ep/down", *[Reply(503, b"down")] * 3)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        kept = admin.put_webhook_config(
            url=rx.url("/ep/headers"),
            event_types=["user.*"],
            headers={"authorization": "Bearer ep-s3cret", "x-route": "blue"},
        ).config
        down = admin.put_webhook_config(url=rx.url("/ep/down"), event_types=["reward.*"]).config
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        pending = pub.publish_event(org, "reward.claimed", example()).event_id
    rx.wait_for(1, path="/ep/down")
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    card = page.locator(f"article.endpoint[data-config-id={kept.id}]")
    # the custom headers are listed by name; their values never reach the page
    expect(card.locator(".header-chip")).to_have_count(2)
    expect(card.locator(".endpoint-headers")).to_contain_text("authorization")
    expect(card.locator(".endpoint-headers")).to_contain_text("x-route")
    assert "ep-s3cret" not in page.content()

    # a change to one header without the others' values is refused beside the headers
    card.get_by_role("button", name="Edit").click()
    form = page.get_by_role("dialog", name="Edit endpoint")
    expect(form.get_by_label("Value of authorization")).to_have_attribute("type", "password")
    expect(form.get_by_label("Value of x-route")).to_have_attribute("type", "text")
    form.get_by_label("Value of x-route").fill("green")
    form.get_by_role("button", name="Save changes").click()
    expect(form.locator("[data-field=headers] .field-error")).to_contain_text(
        "value of authorization again"
    )
    # edit one, keep one (typed again), add one: sent with the next attempt
    form.get_by_label("Value of authorization").fill("Bearer ep-s3cret-2")
    form.get_by_role("button", name="Add a header").click()
    form.get_by_label("Header name").last.fill("X-Tenant")
    form.get_by_label("Value of X-Tenant").fill("acme")
    screenshot(page, "headers-desktop", full_page=False)
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_be_hidden()
    expect(card.locator(".header-chip")).to_have_count(3)

    # health counts test events: the card leaves "No deliveries yet"
    expect(card.locator(".pill")).to_have_text("No deliveries yet")
    card.get_by_role("button", name="Send test event").click()
    tester = page.get_by_role("dialog", name="Send a test event")
    tester.get_by_label("Event type").select_option("")  # the ping
    tester.get_by_role("button", name="Send test event").click()
    expect(tester.get_by_role("status")).to_contain_text("Test event delivered: HTTP 200")
    page.keyboard.press("Escape")
    expect(card.get_by_role("status")).to_contain_text("Test event delivered: HTTP 200")
    got = rx.wait_for(1, path="/ep/headers")[-1]
    assert got.headers["authorization"] == "Bearer ep-s3cret-2"
    assert got.headers["x-route"] == "green"
    assert got.headers["x-tenant"] == "acme"
    expect(card.locator(".pill")).to_have_text("Healthy")
    expect(card.locator(".stat", has_text="Attempts")).to_contain_text("1")

    # remove them all
    card.get_by_role("button", name="Edit").click()
    for name in ("authorization", "x-route", "x-tenant"):
        form.get_by_role("button", name=f"Remove header {name}").click()
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_be_hidden()
    expect(card.locator(".header-chip")).to_have_count(0)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert admin.list_webhook_configs()[0].header_names == ()

    # disable asks first, naming the endpoint; Cancel keeps it enabled
    card.get_by_role("button", name="Disable").click()
    confirm = page.get_by_role("dialog", name="Disable this endpoint?")
    expect(confirm).to_contain_text(kept.url)
    screenshot(page, "disable-desktop", full_page=False)
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Cancel").click()
    expect(card.locator(".pill")).to_have_text("Healthy")
    card.get_by_role("button", name="Disable").click()
    confirm.get_by_role("button", name="Disable endpoint").click()
    expect(card.locator(".pill")).to_have_text("Disabled")

    # delete: the confirmation names the URL and what becomes of pending deliveries
    wait_for_outcome_of(stack, keys["all"], pending, "OUTCOME_RETRY_SCHEDULED")
    doomed = page.locator(f"article.endpoint[data-config-id={down.id}]")
    doomed.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete this endpoint?")
    expect(confirm).to_contain_text(down.url)
    expect(confirm).to_contain_text("Cancelled")
    screenshot(page, "delete-desktop", full_page=False)
    confirm.get_by_role("button", name="Delete endpoint").click()
    expect(page.locator("#page-note")).to_contain_text("1 pending delivery was cancelled")
    expect(page.locator("article.endpoint")).to_have_count(1)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert [c.id for c in admin.list_webhook_configs()] == [kept.id]
    assert page.js_errors == []


def focused_id(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement.id"))


def test_event_catalog_and_picker(stack: Stack) -> None:
    from playwright.sync_api import expect

    _, keys = make_org_and_keys(stack.srv.engine, "Catalog")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        catalog = admin.list_event_types()
    claimed = next(t for t in catalog if t.name == "reward.claimed")
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    page.get_by_role("link", name="Event types").click()
    expect(page.get_by_role("heading", name="Event types", exact=True)).to_be_visible()
    # every type of GET /webhooks/event-types, under its category
    expect(page.locator("details.catalog-type")).to_have_count(len(catalog))
    for category in {t.category for t in catalog}:
        expect(page.get_by_role("heading", name=category, exact=True)).to_be_visible()
    screenshot(page, "catalog-desktop")
    # one type opened by its address: description, the fields of its schema, the example
    page.goto(page.url.split("#")[0] + "#/catalog?type=reward.claimed")
    entry = page.locator("details[data-type='reward.claimed']")
    expect(entry).to_have_attribute("open", "")
    expect(entry).to_contain_text(claimed.description)
    schema = dict(claimed.schema)
    for name, prop in schema["properties"].items():
        field = entry.locator(".schema-field", has=page.locator(f"code:text-is('{name}')")).first
        expect(field).to_contain_text(str(prop["description"]).split("\n\n")[0])
    required = schema["required"][0]
    expect(
        entry.locator(".schema-field", has=page.locator(f"code:text-is('{required}')")).first
    ).to_contain_text("required")
    example_text = entry.get_by_label("Example data of reward.claimed").inner_text()
    assert json.loads(example_text) == dict(claimed.example)
    screenshot(page, "catalog-type-desktop", full_page=False)
    # filter by words
    page.get_by_label("Find an event type").fill("claimed")
    expect(page.locator("details.catalog-type")).to_have_count(
        sum("claimed" in f"{t.name} {t.description}".lower() for t in catalog)
    )

    # the picker: nothing the API refuses, wildcards first-class, one Tab stop
    page.get_by_role("link", name="Endpoints").click()
    page.get_by_role("button", name="Add endpoint").click()
    form = page.get_by_role("dialog", name="Add an endpoint")
    assert any(t.name == "webhook.ping" for t in catalog)  # listed by the API …
    expect(form.locator("input[data-pattern='webhook.ping']")).to_have_count(0)  # … not offered
    expect(form.get_by_label("All webhook events")).to_be_visible()
    expect(form.get_by_label("webhook.endpoint_disabled")).to_be_visible()
    expect(form.get_by_label("Endpoint URL")).to_be_focused()
    page.keyboard.press("Tab")
    assert focused_id(page) == "et-all"
    page.keyboard.press("Tab")
    assert focused_id(page) == "et-other"  # one stop for all the boxes
    page.keyboard.press("Shift+Tab")
    assert focused_id(page) == "et-all"
    page.keyboard.press("Space")  # tick "*"
    expect(form.get_by_label("All reward events")).to_be_disabled()  # covered by *
    expect(form.get_by_label("All webhook events")).to_be_enabled()  # * does not cover it
    page.keyboard.press("ArrowDown")  # the covered boxes are skipped
    assert focused_id(page) == "et-cat-webhook"
    page.keyboard.press("Space")
    page.keyboard.press("ArrowUp")
    assert focused_id(page) == "et-all"
    page.keyboard.press("End")
    assert focused_id(page) == page.evaluate(
        "() => [...document.querySelectorAll('.picker input:not(:disabled)')].at(-1).id"
    )
    page.keyboard.press("Tab")
    assert focused_id(page) == "et-other"
    form.get_by_label("Endpoint URL").fill(stack.rx.url("/picked"))
    form.get_by_role("button", name="Create endpoint").click()
    page.get_by_role("button", name="I have stored it").click()
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert list(admin.list_webhook_configs()[0].event_types) == ["*", "webhook.*"]
    assert page.js_errors == []


def test_endpoint_ordered_is_shown_and_edited_in_the_dialog(stack: Stack) -> None:
    """Ordered delivery (issue 22): the dialog shows the held setting, sends it
    (the value held when untouched), and the server keeps what was saved."""
    from playwright.sync_api import expect

    _, keys = make_org_and_keys(stack.srv.engine, "Ordered")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        config_id = admin.put_webhook_config(
            url=stack.rx.url("/ordered"), event_types=["*"], ordered=True
        ).config.id
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    card = page.locator(f"article.endpoint[data-config-id={config_id}]")

    def save(expected_body: dict[str, Any], toggle: bool) -> None:
        card.get_by_role("button", name="Edit").click()
        form = page.get_by_role("dialog", name="Edit endpoint")
        box = form.get_by_role("checkbox", name=re.compile("Ordered per key"))
        expect(box).to_be_checked(checked=expected_body["ordered"] != toggle)
        if toggle:
            box.click()
        with page.expect_request(
            lambda r: r.method == "PUT" and r.url.endswith("/webhooks/configs")
        ) as sent:
            form.get_by_role("button", name="Save changes").click()
        expect(form).to_be_hidden()
        body = sent.value.post_data_json
        assert {k: v for k, v in body.items() if k == "ordered"} == expected_body

    save({"ordered": True}, toggle=False)  # unchanged: the value held
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert admin.list_webhook_configs()[0].ordered
    save({"ordered": False}, toggle=True)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert not admin.list_webhook_configs()[0].ordered
    save({"ordered": True}, toggle=True)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert admin.list_webhook_configs()[0].ordered
    assert page.js_errors == []


def test_signing_scheme_and_ownership_on_the_card(stack: Stack) -> None:
    """Issue 23: the scheme and public key shown, switching scheme with the grace
    window, the verification state and "Verify again"."""
    from playwright.sync_api import expect

    from webhooks_client import verification_answer
    from webhooks_service.core import orgs

    org, keys = make_org_and_keys(stack.srv.engine, "Signs")
    orgs.set_endpoint_verification(stack.srv.engine, org, True)
    rx = stack.rx
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        created = admin.put_webhook_config(url=rx.url("/sig/own"), event_types=["*"])
    rx.wait_for(1, path="/sig/own")  # the challenge, answered "ok": not a proof
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    card = page.locator(f"article.endpoint[data-config-id={created.config.id}]")
    expect(card.locator(".pill")).to_have_text("Awaiting verification")
    expect(card.locator(".endpoint-signing")).to_contain_text("HMAC-SHA256 (v1)")
    expect(card.locator(".endpoint-signing")).to_contain_text("Ownership not verified")
    expect(card.locator(".endpoint-signing")).to_contain_text("did not echo the challenge")

    # switch to ed25519: confirmed first; the public key and the grace are shown
    card.get_by_role("button", name="Switch to ed25519").click()
    page.get_by_role("dialog", name="Sign with ed25519?").get_by_role(
        "button", name="Switch to ed25519"
    ).click()
    expect(card.locator(".scheme")).to_have_text("ed25519 (v1a)")
    expect(card.locator(".public-key")).to_contain_text("whpk_")
    expect(card.locator(".endpoint-signing")).to_contain_text("previous secret also signs until")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        public_key = admin.list_webhook_configs()[0].secret_hint
    assert public_key.startswith("whpk_")  # the hint of the public key, never the private one
    assert "whsk_" not in page.content()

    # the receiver learns to answer (with the secret that still signs during the grace)
    def answer(request: Any) -> Reply:
        body = verification_answer(created.secret, request.headers, request.body)
        return Reply(200, body or b"ok", {"content-type": "application/json"})

    rx.respond("/sig/own", answer)
    card.get_by_role("button", name="Verify again").click()
    expect(card.get_by_role("status")).to_contain_text("Verified")
    expect(card.locator(".endpoint-signing")).to_contain_text("Ownership verified")
    expect(card.locator(".pill")).not_to_have_text("Awaiting verification")
    screenshot(page, "signing-desktop", full_page=False)
    rx.respond("/sig/own", None)


def test_endpoint_filter_with_its_dry_run(stack: Stack) -> None:
    """The dialog's payload filter: the dry run beside it says what the endpoint would
    have received of the recent events (the same answer as the API's), a bad filter
    is shown beside the field (from the dry run and from saving), and the saved
    endpoint receives only the matching events; an untouched filter is kept."""
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Filters")
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        for i, points in enumerate(["50", "250", "101", "7"]):
            pub.publish_event(org, "reward.claimed", example(points=points), id=f"evt_f{i}")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        expected = admin.test_webhook_filter("event.data.points > 100", ["*"])
    assert (expected.examined, expected.matched) == (4, 2)
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    page.get_by_role("button", name="Add endpoint").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Endpoint URL").fill(stack.rx.url("/filtered"))
    dialog.get_by_label("All events").check()
    box = dialog.get_by_label("Payload filter")
    error = dialog.locator("#filter-error")

    box.fill("event.data.pointz > 1")
    dialog.get_by_role("button", name="Try on recent events").click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("undefined field 'pointz'")
    expect(box).to_have_attribute("aria-invalid", "true")

    box.fill("event.data.points > 100")
    dialog.get_by_role("button", name="Try on recent events").click()
    expect(error).to_be_hidden()
    expect(dialog.locator("#filter-result")).to_contain_text(
        "Would have received 2 of the last 4 events. Latest: reward.claimed evt_f2, "
        "reward.claimed evt_f1"
    )
    screenshot(page, "endpoint-filter", full_page=False)

    box.fill("event.data.points >")  # refused on save too, beside the field
    dialog.get_by_role("button", name="Create endpoint").click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("Syntax error")
    box.fill("event.data.points > 100")
    dialog.get_by_role("button", name="Create endpoint").click()
    page.get_by_role("button", name="I have stored it").click()
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        [config] = admin.list_webhook_configs()
        assert config.filter == "event.data.points > 100"
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        pub.publish_event(org, "reward.claimed", example(points="1"), id="evt_small")
        pub.publish_event(org, "reward.claimed", example(points="900"), id="evt_large")
    [got] = stack.rx.wait_for(1, "/filtered")
    assert json.loads(got.body)["id"] == "evt_large"

    # saving the dialog untouched keeps the filter
    card = page.locator("article.endpoint")
    card.get_by_role("button", name="Edit").click()
    form = page.get_by_role("dialog", name="Edit endpoint")
    expect(form.get_by_label("Payload filter")).to_have_value("event.data.points > 100")
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_be_hidden()
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        assert admin.list_webhook_configs()[0].filter == "event.data.points > 100"
    assert stack.rx.count("/filtered") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_states_loading_unreachable_and_messages(stack: Stack) -> None:
    """Loading is shown while the first list is on its way; an API that cannot
    be reached is said so, with a retry, and never next to an empty state; a
    refused filter is explained beside it without the API's RPC names."""
    from playwright.sync_api import expect

    _, keys = make_org_and_keys(stack.srv.engine, "States")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        admin.put_webhook_config(url=stack.rx.url("/states"), event_types=["*"])
    link = portal_for(stack, keys["all"])
    page = new_page(stack, DESKTOP)
    held: list[Any] = []
    page.route("**/webhooks/configs?*", lambda route: held.append(route))
    page.goto(link)
    expect(page.get_by_role("status").filter(has_text="Loading your endpoints")).to_be_visible()
    expect(page.get_by_text("No endpoints yet")).to_have_count(0)
    screenshot(page, "loading-desktop")
    for route in held:
        route.continue_()
    page.unroute("**/webhooks/configs?*")
    expect(page.locator("article.endpoint")).to_have_count(1)

    # the network drops: the failure, its retry, and no "No endpoints yet"
    page.route("**/webhooks/configs?*", lambda route: route.abort())
    page.reload()
    failure = page.get_by_role("alert").filter(has_text="The API cannot be reached")
    expect(failure).to_be_visible()
    expect(page.get_by_text("No endpoints yet")).to_have_count(0)
    page.unroute("**/webhooks/configs?*")
    failure.get_by_role("button", name="Try again").click()
    expect(page.locator("article.endpoint")).to_have_count(1)

    # a refused filter: said beside the field in words, the list says why it is empty
    page.get_by_role("link", name="Delivery log").click()
    expect(page.get_by_role("heading", name="Delivery log", exact=True)).to_be_visible()
    page.get_by_label("Event type", exact=True).fill("nope.nothing")
    page.get_by_label("Event type", exact=True).press("Enter")
    expect(page.locator("[data-field=filter-type] .field-error")).to_be_visible()
    expect(page.locator("#log-list")).to_contain_text("fix the event type filter")
    expect(page.get_by_text("No attempts yet")).to_have_count(0)
    expect(page.get_by_label("Event type", exact=True)).to_have_attribute("aria-invalid", "true")
    assert not re.search(r"[A-Z][a-z]+(Deliver|Log|Config)[A-Za-z]*", page.inner_text("main"))

    # a gateway whose API is down (the real Envoy, no upstream): every screen says so
    token = parse_qs(urlsplit(link).fragment)["token"][0]
    with running_gateway([f"127.0.0.1:{free_port()}"]) as dead:
        down = new_page(stack, DESKTOP)
        down.goto(f"{dead.base_url}/dashboard/#token={token}")
        expect(down.get_by_role("alert")).to_contain_text("The API cannot be reached")
        expect(down.get_by_text("No endpoints yet")).to_have_count(0)
        screenshot(down, "unreachable-desktop")
        down.get_by_role("link", name="Delivery log").click()
        expect(down.get_by_role("alert")).to_contain_text("The API cannot be reached")
        expect(down.get_by_text("No attempts")).to_have_count(0)
        down.get_by_role("link", name="Event types").click()
        expect(down.get_by_role("alert")).to_contain_text("The API cannot be reached")
        assert down.js_errors == []
    assert page.js_errors == []


def test_message_view_and_attempt_detail(stack: Stack) -> None:
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Messages")
    rx = stack.rx
    rx.program("/mv/b", Reply(400, b'{"error": "not yet"}'), Reply(200))
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        a = admin.put_webhook_config(url=rx.url("/mv/a"), event_types=["reward.*"]).config
        b = admin.put_webhook_config(url=rx.url("/mv/b"), event_types=["*"]).config
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        event_id = pub.publish_event(org, "reward.claimed", example()).event_id
    wait_for_outcome_of(stack, keys["all"], event_id, "OUTCOME_FAILED")
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    page.get_by_role("link", name="Delivery log").click()
    failed = page.locator(".log-row[data-outcome=OUTCOME_FAILED]")
    expect(failed).to_have_count(1)
    failed.get_by_role("button").click()
    detail = page.get_by_role("dialog", name="Delivery attempt")
    # it opens at the top: focus on its heading, not on Retry
    expect(detail.get_by_role("heading", name="Delivery attempt")).to_be_focused()
    assert detail.evaluate("el => el.scrollTop") == 0
    expect(detail).to_contain_text(b.url)
    expect(detail.locator(".details")).to_contain_text("400")
    expect(detail.get_by_label("Response body")).to_contain_text("not yet")

    # from the attempt to the event: its payload and every endpoint's delivery
    detail.get_by_role("link", name="All deliveries of this event").click()
    expect(page.get_by_role("heading", name=event_id)).to_be_visible()
    expect(page.get_by_label("Payload")).to_contain_text('"type": "reward.claimed"')
    cards = page.locator("article.event-delivery")
    expect(cards).to_have_count(2)
    to_a = page.locator(f"article.event-delivery[data-config-id={a.id}]")
    to_b = page.locator(f"article.event-delivery[data-config-id={b.id}]")
    expect(to_a).to_contain_text(a.url)
    expect(to_a.locator(".pill").first).to_have_text("Delivered")
    expect(to_b.locator(".endpoint-head .pill")).to_have_text("Failed")
    screenshot(page, "event-desktop")
    # retry to one endpoint only
    to_b.get_by_role("button", name="Retry to this endpoint").click()
    expect(to_b.get_by_role("status")).to_contain_text("Retry scheduled")
    expect(to_b.locator(".endpoint-head .pill")).to_have_text("Delivered")
    expect(to_b.locator(".log-row")).to_have_count(2)
    expect(to_a.locator(".log-row")).to_have_count(1)
    assert rx.count("/mv/a") == 1
    # an attempt opened from here has its bodies (from the log)
    to_b.locator(".log-row[data-outcome=OUTCOME_FAILED]").get_by_role("button").click()
    expect(detail.get_by_label("Response body")).to_contain_text("not yet")
    page.keyboard.press("Escape")

    # by event id, in a new page; a deleted endpoint is named by its URL
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        admin.delete_webhook_config(a.id)
    other = new_page(stack, PHONE)
    other.goto(portal_for(stack, keys["all"]))
    other.get_by_role("link", name="Events").click()
    other.get_by_label("Event id").fill(event_id)
    other.get_by_role("button", name="Show the event").click()
    expect(other.locator("article.event-delivery")).to_have_count(2)
    expect(other.locator(f"article.event-delivery[data-config-id={a.id}]")).to_contain_text(
        f"{a.url} (deleted)"
    )
    assert other.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(other, "event-phone")
    other.get_by_label("Event id").fill("evt_nothing_here")
    other.get_by_role("button", name="Show the event").click()
    expect(other.get_by_role("alert")).to_contain_text("No such event")
    assert page.js_errors == [] and other.js_errors == []


def row_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(".log-row", "rows => rows.map(r => r.dataset.logId)")
    return ids


def test_log_filters_in_the_address_headers_and_test_events(stack: Stack) -> None:
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Log filters")
    rx = stack.rx
    rx.program("/lf/bad", *[Reply(500, b"broken")] * 6)
    rx.program("/lf/gone", *[Reply(503, b"later")] * 6)
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        ok = admin.put_webhook_config(
            url=rx.url("/lf/ok"),
            event_types=["*"],
            headers={"authorization": "Bearer lf-s3cret", "x-team": "billing"},
        ).config
        admin.put_webhook_config(url=rx.url("/lf/bad"), event_types=["reward.*"])
        gone = admin.put_webhook_config(url=rx.url("/lf/gone"), event_types=["user.*"]).config
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        for type_ in ("reward.claimed", "reward.redeemed", "user.authenticated"):
            pub.publish_event(org, type_, example(type_))
    rx.wait_for(3, path="/lf/ok")
    rx.wait_for(2, path="/lf/bad")
    rx.wait_for(1, path="/lf/gone")
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        eventually(lambda: len(admin.list_delivery_logs().logs) >= 6, 15, "6 log entries")
        assert admin.delete_webhook_config(gone.id).cancelled_deliveries == 1
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    page.get_by_role("link", name="Delivery log").click()
    rows = page.locator(".log-row")
    expect(rows).to_have_count(7)

    # cancelled: a human label that does not run into the event type; the deleted endpoint by URL
    page.get_by_label("Outcome").select_option(label="Cancelled")
    expect(rows).to_have_count(1)
    pill = rows.first.locator(".log-outcome .pill")
    expect(pill).to_have_text("Cancelled")
    assert "OUTCOME_" not in page.inner_text("#log-list")
    assert (
        pill.bounding_box()["x"] + pill.bounding_box()["width"]
        <= (rows.first.locator(".log-type").bounding_box()["x"])
    )
    expect(rows.first.locator(".log-endpoint")).to_have_text(
        gone.url.removeprefix("http://") + " (deleted)"
    )
    expect(rows.first.locator(".log-status")).to_have_text("Not sent")
    page.get_by_label("Outcome").select_option(label="Any outcome")

    # type wildcard, status class, time range: all in the address
    page.get_by_label("Event type", exact=True).fill("reward.*")
    page.get_by_label("Event type", exact=True).press("Enter")
    expect(rows).to_have_count(4)
    page.get_by_label("Response").select_option(label="5xx server error")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="HTTP 500")).to_have_count(2)
    page.get_by_role("button", name="Last hour").click()
    expect(rows).to_have_count(2)
    url = page.url
    assert {"event_type=reward.*", "status_class=STATUS_CLASS_5XX", "since="} <= {
        part.split("=")[0] + "=" + (part.split("=")[1] if "since" not in part else "")
        for part in urlsplit(url).fragment.split("?")[1].replace("%2A", "*").split("&")
    }
    shown = row_ids(page)
    screenshot(page, "log-filtered-desktop")
    # the link in another page (signed in there too) shows the same rows and filters
    again = new_page(stack, PHONE)
    again.goto(portal_for(stack, keys["all"]))
    expect(again.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    again.goto(url)
    expect(again.locator(".log-row")).to_have_count(2)
    assert row_ids(again) == shown
    expect(again.get_by_label("Event type", exact=True)).to_have_value("reward.*")
    expect(again.get_by_label("Response")).to_have_value("STATUS_CLASS_5XX")
    expect(again.get_by_label("From")).not_to_have_value("")
    screenshot(again, "log-filtered-phone")
    # a time range with nothing in it: empty, saying so, with a way back
    page.get_by_label("From").fill("2020-01-01T00:00")
    page.get_by_label("Until").fill("2020-01-02T00:00")
    page.get_by_label("Until").dispatch_event("change")
    expect(page.locator("#log-list")).to_contain_text("No attempts match these filters")
    page.get_by_role("button", name="Clear filters").click()
    expect(rows).to_have_count(7)

    # the attempt as sent: request headers (signature shortened, secret masked), response headers
    rows.filter(has_text="user.authenticated").filter(has_text="/lf/ok").get_by_role(
        "button"
    ).click()
    detail = page.get_by_role("dialog", name="Delivery attempt")
    sent = detail.get_by_role("table", name="Request headers")
    expect(sent).to_contain_text("webhook-id")
    expect(sent).to_contain_text("x-team")
    expect(sent).to_contain_text("billing")
    signature = sent.locator("tr", has_text="webhook-signature").locator("td").inner_text()
    assert signature.startswith("v1,") and "…" in signature and len(signature) < 30
    assert "lf-s3cret" not in page.content()
    received = detail.get_by_role("table", name="Response headers")
    expect(received).to_contain_text(re.compile("content-type", re.I))
    screenshot(page, "attempt-desktop", full_page=False)
    page.keyboard.press("Escape")

    # a test event of a chosen type: the example to start from, the server's verdict beside it
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        claimed = next(t for t in admin.list_event_types() if t.name == "reward.claimed")
    page.get_by_role("link", name="Endpoints").click()
    page.locator(f"article.endpoint[data-config-id={ok.id}]").get_by_role(
        "button", name="Send test event"
    ).click()
    tester = page.get_by_role("dialog", name="Send a test event")
    options = tester.get_by_label("Event type").locator("option")
    assert "webhook.endpoint_disabled" not in options.all_inner_texts()  # * does not cover it
    tester.get_by_label("Event type").select_option("reward.claimed")
    editor = tester.get_by_label("Data")
    assert json.loads(editor.input_value()) == dict(claimed.example)
    data = dict(claimed.example) | {"points": "lots", "user_id": "usr_from_the_test"}
    editor.fill(json.dumps(data, indent=2))
    tester.get_by_role("button", name="Send test event").click()
    expect(tester.locator("ul.violations")).to_contain_text("points")
    expect(editor).to_have_attribute("aria-invalid", "true")
    screenshot(page, "test-event-desktop", full_page=False)
    before = rx.count("/lf/ok")
    editor.fill(json.dumps(data | {"points": "75"}, indent=2))
    tester.get_by_role("button", name="Send test event").click()
    expect(tester.get_by_role("status")).to_contain_text("Test event delivered: HTTP 200")
    got = rx.wait_for(before + 1, path="/lf/ok")[-1]
    body = json.loads(got.body)
    assert body["type"] == "reward.claimed"
    assert body["data"]["user_id"] == "usr_from_the_test" and body["data"]["points"] == "75"
    tester.get_by_role("button", name="Open the attempt").click()
    expect(page.get_by_role("dialog", name="Delivery attempt")).to_contain_text("reward.claimed")
    assert page.js_errors == [] and again.js_errors == []


def test_endpoint_charts(stack: Stack) -> None:
    from playwright.sync_api import expect

    org, keys = make_org_and_keys(stack.srv.engine, "Charts")
    rx = stack.rx
    rx.program("/charts", Reply(200), Reply(503), Reply(200), Reply(400), Reply(200, delay=0.05))
    with AdminClient(stack.srv.target, keys["all"]) as admin:
        config = admin.put_webhook_config(url=rx.url("/charts"), event_types=["reward.*"]).config
        admin.put_webhook_config(url=rx.url("/charts-quiet"), event_types=["user.*"])
    with PublisherClient(stack.srv.target, keys["events:publish"]) as pub:
        pub.publish_events(
            [make_publish_request(org, "reward.claimed", example()) for _ in range(5)]
        )
    rx.wait_for(5, path="/charts")

    def stats() -> dict[str, Any]:
        resp = httpx.get(
            f"{stack.gw.base_url}/webhooks/configs/{config.id}/stats",
            headers={"authorization": f"Bearer {keys['all']}"},
        )
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    eventually(lambda: int(stats()["attempts"]) >= 5, 15, "5 attempts in the stats")
    served = stats()
    assert (int(served["attempts"]), int(served["failures"])) == (5, 2)
    page = new_page(stack, DESKTOP)
    page.goto(portal_for(stack, keys["all"]))
    card = page.locator(f"article.endpoint[data-config-id={config.id}]")
    chart = card.locator("svg.activity")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(r"^Last 24 hours: 5 attempts, 2 failed; busiest hour")
    )
    expect(chart.locator("g.hour")).to_have_count(len(served["buckets"]))
    expect(chart.locator("rect.bad-bar")).to_have_count(
        sum(1 for b in served["buckets"] if int(b["failures"]))
    )
    for label in ("p50", "p90", "p99"):
        row = card.locator(".latency-row", has_text=label)
        expect(row).to_contain_text(f"{int(served[f'latency_{label}_ms']):,} ms")
    quiet = page.locator("article.endpoint", has_text="/charts-quiet")
    quiet.scroll_into_view_if_needed()  # charts load when their card is seen
    expect(quiet.locator("svg.activity")).to_have_attribute(
        "aria-label", "Last 24 hours: no attempts."
    )
    screenshot(page, "charts-desktop")
    page.set_viewport_size(PHONE)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "charts-phone")
    assert page.js_errors == []

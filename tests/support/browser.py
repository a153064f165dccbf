"""Headless Chromium for the dashboard's browser tests, driven by Playwright.

Playwright's own browser download cannot run here (nothing but the package
registries is reachable), so the tests drive the system's Chromium (Debian's
``chromium`` package, installed by ``.ci/run``) through ``executable_path``.
``WEBHOOKS_TEST_CHROMIUM`` points at another binary. Without a browser the
tests skip with the reason, except under ``CI=true``, where that is a failure.

Screenshots, one per screen the tests visit, go to ``artifacts/screenshots/``
(ignored by git), or to the folder ``WEBHOOKS_SCREENSHOTS`` names:
``make screenshots`` writes ``docs/screenshots/``, which docs/dashboard.md and
the README show. Every screenshot is also an
accessibility check: axe-core (``tests/support/axe.min.js``, axe-core from npm
with its MPL-2.0 licence header, licence in ``axe-core.LICENSE``) runs in the
page and any serious or critical violation fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("WEBHOOKS_SCREENSHOTS", "artifacts/screenshots")
AXE = Path(__file__).with_name("axe.min.js")
AXE_IMPACTS = ("serious", "critical")
# What axe checks: WCAG 2.1 A and AA, and its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("WEBHOOKS_TEST_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests must run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (a Playwright ``Browser``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (make venv)")
    path = find_chromium()
    if path is None:
        _unavailable(
            "no Chromium found: install Debian's `chromium` package "
            "(apt-get install -y chromium) or set WEBHOOKS_TEST_CHROMIUM"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=path,
            headless=True,
            # root in CI containers: Chromium's sandbox needs user namespaces.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def accessibility_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now,
    one line each (rule, impact, help, the first offending elements)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated over the DevTools protocol, so the dashboard's CSP
        # (script-src 'self') does not apply; nothing is added to the page's files.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
    results = page.evaluate(
        """async (tags) => {
             const r = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                resultTypes: ['violations']});
             return r.violations.map(v => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
           }""",
        AXE_TAGS,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {', '.join(v['nodes'])}"
        for v in results
        if v["impact"] in AXE_IMPACTS
    ]


def screenshot(page: Any, name: str, *, full_page: bool = True, axe: bool = True) -> Path:
    """``full_page=False`` for a modal dialog (it covers the viewport only).
    With ``axe`` (the default) the screen must have no serious or critical
    accessibility violation."""
    if axe:
        found = accessibility_violations(page)
        assert not found, f"{name}: accessibility violations:\n" + "\n".join(found)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if full_page:  # a page as it looks, without the focus ring of the last click
        page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    page.screenshot(path=str(path), full_page=full_page)
    return path
